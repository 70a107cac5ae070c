"""MinHash shingles/signatures against the reference definitions, the sorted key map, verified near dedup."""

from __future__ import annotations

import numpy as np

from dmu_service.pipeline import _kernels
from dmu_service.pipeline.config import DedupConfig
from dmu_service.pipeline.dedup import Deduplicator, SortedKeyMap, estimated_jaccard
from dmu_service.pipeline.minhash import MinHasher, script_shingle_hashes, shingles, units
from tests.dmu.testlib import make_doc


def test_hashed_shingles_match_reference_shingles() -> None:
    hasher = MinHasher(DedupConfig())
    for text in [make_doc("en", 1), make_doc("zh", 1), "Short text.", "A b c d e f", "中文 和 English mixed 文本内容"]:
        hashes, counts = hasher.shingle_hashes([text], "auto")
        assert len(set(hashes.tolist())) == len(shingles(text, ngram=5)), text
        assert counts.sum() == hashes.size
    assert shingles("The cat sat on the mat today", ngram=5) == {"the cat sat on the", "cat sat on the mat", "sat on the mat today"}


def test_script_aware_units_within_one_document() -> None:
    # CJK characters are units of their own, other scripts' words are units: whatever the CJK share.
    text = "使用 ls -la 列出目录 /etc/apt 的内容"
    assert units(text, "auto") == ["使", "用", "ls", "la", "列", "出", "目", "录", "etc", "apt", "的", "内", "容"]
    # "İ" lowercases to two characters: the document boundaries must follow the lowercased text.
    texts = [text, "", "ÉCOLE déjà-vu", "İİİİ İstanbul", "a b", "x"]
    for ngram in (1, 2, 5):
        hashes, counts = script_shingle_hashes(texts, ngram)
        assert counts.tolist() == [max(len(units(t, "auto")) - ngram + 1, 0) for t in texts]
        assert [len(set(h)) for h in np.split(hashes.tolist(), np.cumsum(counts)[:-1])] == [len(shingles(t, ngram=ngram)) for t in texts]


def test_signatures_are_the_minima_of_the_multiply_shift_permutations() -> None:
    """The kernel's signature (AVX2 lanes of 8 permutations and the scalar rest) equals numpy's
    ((a * x) mod 2^64 >> 32).min over each document's shingles; a document without keeps its row."""
    rng = np.random.default_rng(6)
    for perms in (112, 13, 5):
        hasher = MinHasher(DedupConfig(num_perm=perms, bands=1, rows=perms))
        counts = rng.integers(0, 40, size=30)
        hashes = rng.integers(0, 2**64 - 1, size=int(counts.sum()), dtype=np.uint64, endpoint=True)
        out = np.full((counts.size, perms), 7, dtype=np.uint32)
        _kernels.minhash_signatures(hashes, counts, hasher.a_lo, hasher.a_hi, out)
        for row, doc_hashes in zip(out, np.split(hashes, np.cumsum(counts)[:-1])):
            expected = ((hasher.a[:, None] * doc_hashes[None, :]) >> np.uint64(32)).min(axis=1) if doc_hashes.size else np.full(perms, 7)
            assert row.tolist() == expected.tolist()


def test_signature_agreement_estimates_jaccard() -> None:
    hasher = MinHasher(DedupConfig(num_perm=256, bands=32, rows=8))
    base = make_doc("en", 5, n_sentences=20)
    words = base.split(" ")
    variants = [base] + [" ".join(words[: len(words) - k * 20]) for k in range(1, 8)] + [make_doc("en", 99)]
    signatures = hasher.signatures(variants).values
    reference = shingles(base, ngram=5)
    errors_32, errors_8 = [], []
    low = (signatures & 0xFF).astype(np.uint8)
    for text, sig, sig8 in zip(variants, signatures, low, strict=True):
        other = shingles(text, ngram=5)
        true = len(reference & other) / len(reference | other)
        errors_32.append(abs((sig == signatures[0]).mean() - true))
        errors_8.append(abs(float(estimated_jaccard(sig8, low[0])) - true))
    assert max(errors_32) < 0.1, errors_32
    assert max(errors_8) < 0.1, errors_8  # b-bit minima, corrected for chance agreement


def test_signatures_do_not_depend_on_batching() -> None:
    hasher = MinHasher(DedupConfig())
    texts = [make_doc("en", i) for i in range(6)] + [make_doc("zh", i) for i in range(6)] + ["tiny"]
    together = hasher.signatures(texts)
    alone = np.vstack([hasher.signatures([t]).values for t in texts])
    assert np.array_equal(together.values, alone)
    assert together.has_shingles.tolist() == [True] * 12 + [False]


def test_sorted_key_map_keeps_the_first_owner() -> None:
    keys = SortedKeyMap()
    rng = np.random.default_rng(0)
    added = [rng.integers(0, 1 << 63, size=n, dtype=np.uint64) for n in (5, 50, 3, 500, 1)]
    row = 0
    for batch in added:
        keys.add(batch, np.arange(row, row + batch.size))
        row += batch.size
    everything = np.concatenate(added)
    assert (keys.lookup(everything) == np.arange(everything.size)).all() and len(keys) == everything.size
    keys.add(added[0], np.full(5, 999))
    assert (keys.lookup(added[0]) == np.arange(5)).all()
    assert (keys.lookup(rng.integers(0, 1 << 63, size=100, dtype=np.uint64)) == -1).all()


def test_decisions_exact_near_and_across_batches() -> None:
    dedup = Deduplicator(DedupConfig())
    doc = make_doc("en", 7, n_sentences=20)
    near = doc.replace("The", "A", 1) + " One more short sentence."
    other = make_doc("en", 8, n_sentences=20)
    zh = make_doc("zh", 7, n_sentences=20)
    zh_near = zh[:-3] + "呢。"
    ids = [(1, 0, i) for i in range(7)]
    first = dedup.decide([doc, doc, near, other, zh, zh_near, "tiny"], ids)
    assert first.verdict == ["kept", "exact_dup", "near_dup", "kept", "kept", "near_dup", "kept"]
    assert first.duplicate_of[1] == (1, 0, 0) and first.similarity[1] == 1.0
    assert first.duplicate_of[2] == (1, 0, 0) and 0.8 < first.similarity[2] <= 1.0
    assert first.duplicate_of[5] == (1, 0, 4)
    assert len(dedup) == 4  # only kept documents enter the index
    second = dedup.decide([near + " Yet another line.", other, make_doc("en", 9, n_sentences=20)], [(2, 0, i) for i in range(3)])
    assert second.verdict == ["near_dup", "exact_dup", "kept"]
    assert second.duplicate_of[0] == (1, 0, 0) and second.duplicate_of[1] == (1, 0, 3)


def test_verification_rejects_candidates_below_the_threshold() -> None:
    """Two documents sharing a third of their text may collide in a band; the verified estimate keeps both."""
    a = make_doc("en", 21, n_sentences=18)
    b = "\n\n".join(a.split("\n\n")[:2] + make_doc("en", 22, n_sentences=12).split("\n\n"))
    true = len(shingles(a, ngram=5) & shingles(b, ngram=5)) / len(shingles(a, ngram=5) | shingles(b, ngram=5))
    assert 0.1 < true < 0.45
    assert Deduplicator(DedupConfig()).decide([a, b]).verdict == ["kept", "kept"]
    assert Deduplicator(DedupConfig(threshold=0.05)).decide([a, b]).verdict[1] in ("near_dup", "kept")


def test_the_index_persists_and_verifies_across_runs(tmp_path) -> None:
    from dmu_service.pipeline.dedup import write_segment

    cfg = DedupConfig()
    doc = make_doc("en", 11, n_sentences=20)
    first = Deduplicator(cfg)
    decision = first.decide([doc, make_doc("en", 12, n_sentences=20)], [(1, 0, 0), (1, 0, 1)])
    write_segment(tmp_path / "seg-00000.npz", [decision], num_perm=cfg.num_perm, bands=cfg.bands)
    later = Deduplicator(cfg)
    later.load([tmp_path / "seg-00000.npz"])
    edited = doc + " An extra closing sentence."
    verdict = later.decide([make_doc("en", 13, n_sentences=20), edited, edited + " And one more."], [(2, 0, i) for i in range(3)])
    assert verdict.verdict == ["kept", "near_dup", "near_dup"]
    assert verdict.duplicate_of[1] == (1, 0, 0) and verdict.duplicate_of[2] == (1, 0, 0)
