"""MinHash shingles/signatures against the reference definitions, the sorted key index, union-find clusters."""

from __future__ import annotations

import numpy as np
from tests.dmu.testlib import make_doc

from dmu_service.pipeline.config import DedupConfig
from dmu_service.pipeline.dedup import Deduplicator, SortedKeySet, _components
from dmu_service.pipeline.minhash import MinHasher, shingle_kind, shingles, units


def test_hashed_shingles_match_reference_shingles() -> None:
    hasher = MinHasher(DedupConfig())
    for text in [make_doc("en", 1), make_doc("zh", 1), "Short text.", "A b c d e f", "中文 和 English mixed 文本内容"]:
        kind = shingle_kind(text, "auto")
        hashes, counts = hasher.shingle_hashes([units(text, kind)], kind)
        assert len(set(hashes.tolist())) == len(shingles(text, ngram=5)), text
        assert counts.sum() == hashes.size
    assert shingle_kind(make_doc("zh", 1), "auto") == "char" and shingle_kind(make_doc("en", 1), "auto") == "word"
    assert shingles("The cat sat on the mat today", ngram=5) == {"the cat sat on the", "cat sat on the mat", "sat on the mat today"}


def test_signature_agreement_estimates_jaccard() -> None:
    hasher = MinHasher(DedupConfig(num_perm=256, bands=32, rows=8))
    base = make_doc("en", 5, n_sentences=20)
    words = base.split(" ")
    variants = [base] + [" ".join(words[: len(words) - k * 20]) for k in range(1, 8)] + [make_doc("en", 99)]
    signatures = hasher.signatures(variants).values
    errors = []
    reference = shingles(base, ngram=5)
    for text, sig in zip(variants, signatures):
        other = shingles(text, ngram=5)
        true = len(reference & other) / len(reference | other)
        errors.append(abs((sig == signatures[0]).mean() - true))
    assert max(errors) < 0.1, errors


def test_signatures_do_not_depend_on_batching() -> None:
    hasher = MinHasher(DedupConfig())
    texts = [make_doc("en", i) for i in range(6)] + [make_doc("zh", i) for i in range(6)] + ["tiny"]
    together = hasher.signatures(texts)
    alone = np.vstack([hasher.signatures([t]).values for t in texts])
    assert np.array_equal(together.values, alone)
    assert together.has_shingles.tolist() == [True] * 12 + [False]


def test_sorted_key_set() -> None:
    keys = SortedKeySet()
    rng = np.random.default_rng(0)
    added = [rng.integers(0, 1 << 63, size=n, dtype=np.uint64) for n in (5, 50, 3, 500, 1)]
    for batch in added:
        keys.add(batch)
    everything = np.concatenate(added)
    assert keys.contains(everything).all() and len(keys) == np.unique(everything).size
    assert not keys.contains(rng.integers(0, 1 << 63, size=100, dtype=np.uint64)).any()


def test_union_find_components() -> None:
    labels = _components(6, np.array([0, 2, 4]), np.array([1, 3, 3]))
    assert labels.tolist() == [0, 0, 2, 2, 2, 5]
    chain = _components(5, np.array([4, 3, 2, 1]), np.array([3, 2, 1, 0]))
    assert chain.tolist() == [0] * 5


def test_decisions_exact_near_and_across_batches() -> None:
    dedup = Deduplicator(DedupConfig())
    doc = make_doc("en", 7, n_sentences=20)
    near = doc.replace("The", "A", 1) + " One more short sentence."
    other = make_doc("en", 8, n_sentences=20)
    zh = make_doc("zh", 7, n_sentences=20)
    zh_near = zh[:-3] + "呢。"
    first = dedup.decide([doc, doc, near, other, zh, zh_near, "tiny"])
    assert first.verdict == ["kept", "exact_dup", "near_dup", "kept", "kept", "near_dup", "kept"]
    second = dedup.decide([near + " Yet another line.", other, make_doc("en", 9, n_sentences=20)])
    assert second.verdict == ["near_dup", "exact_dup", "kept"]


def test_cluster_touching_the_index_drops_every_member() -> None:
    dedup = Deduplicator(DedupConfig())
    doc = make_doc("en", 11, n_sentences=20)
    dedup.decide([doc])
    edited = doc + " An extra closing sentence."
    assert dedup.decide([make_doc("en", 12, n_sentences=20), edited, edited + " And one more."]).verdict == ["kept", "near_dup", "near_dup"]
