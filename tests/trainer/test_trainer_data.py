"""The mixture sampler's stream: pure, exactly resumable, world-size independent; shard reading errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from heurimentor.contracts.shards import ShardFormatError
from heurimentor_trainer.data import MixtureDataLoader, MixtureSampler, SourceSet, batch_slices, uniform_draws
from tests.trainer.testlib import make_sources

NAMES, SIZES = ["a", "b", "c"], [300, 200, 100]
WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}


def _sampler(**kw) -> MixtureSampler:
    return MixtureSampler(NAMES, SIZES, seed=kw.pop("seed", 3), weights=kw.pop("weights", WEIGHTS), **kw)


def test_draws_are_a_pure_function_of_seed_and_index():
    assert np.array_equal(uniform_draws(3, 5, 10), uniform_draws(3, 0, 15)[5:])
    assert not np.array_equal(uniform_draws(3, 0, 10), uniform_draws(4, 0, 10))
    u = uniform_draws(3, 0, 100_000)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def test_stream_does_not_depend_on_how_it_is_chunked_or_resumed():
    whole = _sampler().plan(240)
    chunked = _sampler()
    first = chunked.plan(96)
    state = json.loads(json.dumps(chunked.state_dict()))  # the state is tiny and JSON-serialisable
    assert len(json.dumps(state)) < 500
    resumed = _sampler()
    resumed.load_state_dict(state)
    assert first + resumed.plan(144) == whole


def test_ranks_take_disjoint_slices_that_cover_the_global_batch():
    for counts in ([12], [6, 6], [4, 4, 4], [9, 3]):
        slices = batch_slices(counts)
        rows = [i for start, end in slices for i in range(start, end)]
        assert rows == list(range(12))


def test_sources_are_drawn_by_weight_and_each_sample_once_per_epoch():
    picks = _sampler(weights={"a": 0.5, "b": 0.3, "c": 0.2}).plan(400)
    counts = Counter(NAMES[s] for s, _ in picks)
    for name, weight in WEIGHTS.items():  # within 4 standard deviations
        assert abs(counts[name] - 400 * weight) < 4 * (400 * weight * (1 - weight)) ** 0.5
    for s in range(3):
        indices = [i for src, i in picks if src == s][: SIZES[s]]
        assert len(set(indices)) == len(indices)
    only_c = _sampler(weights={"c": 1.0}).plan(250)  # 2.5 epochs of c
    indices = [i for _, i in only_c]
    assert {s for s, _ in only_c} == {2}
    assert sorted(indices[:100]) == list(range(100)) and sorted(indices[100:200]) == list(range(100))
    assert indices[:100] != indices[100:200]  # each epoch has its own order


def test_zero_weight_source_is_never_drawn_and_switches_are_recorded():
    sampler = _sampler(weights={"a": 1, "b": 0, "c": 1})
    assert all(NAMES[s] != "b" for s, _ in sampler.plan(500))
    sampler.set_mixture(4, 7, {"b": 2, "zzz": 5})
    assert sampler.weights == {"a": 0.0, "b": 1.0, "c": 0.0}
    assert {NAMES[s] for s, _ in sampler.plan(20)} == {"b"}
    assert sampler.history[-1] == {"step": 4, "sample": 500, "version": 7, "weights": sampler.weights}
    assert sampler.version_at(3) is None and sampler.version_at(4) == 7


def test_resume_with_another_seed_is_refused():
    state = _sampler(seed=3).state_dict()
    with pytest.raises(ValueError, match="seed 3, config has seed 4"):
        _sampler(seed=4).load_state_dict(state)


def test_loader_reads_the_planned_samples_from_the_shards(tmp_path):
    sources = SourceSet(make_sources(tmp_path), 16, vocab_size=512, val_samples_per_source=2)
    assert sources.names == ["code", "en", "zh"]
    sampler = MixtureSampler(sources.names, sources.train_sizes, seed=1, weights={"en": 1, "zh": 1, "code": 1})
    plan = MixtureSampler(sources.names, sources.train_sizes, seed=1, weights={"en": 1, "zh": 1, "code": 1}).plan(8)[4:8]
    batch = MixtureDataLoader(sources, sampler, global_batch=8, rank_slice=(4, 8)).next_batch(1)
    assert batch.tokens.shape == (4, 17)
    assert batch.sample_ids == [f"{sources.names[s]}:{i}" for s, i in plan]
    s, i = plan[0]
    stream = np.concatenate([np.asarray(sh.tokens) for sh in sources.sources[s].shards])
    assert batch.tokens[0].tolist() == stream[i * 16 : i * 16 + 17].tolist()
    assert all(idx < sources.train_sizes[src] for src, idx in plan)  # held-out samples never train


def test_bad_shards_are_refused_naming_the_file_and_field(tmp_path):
    root = make_sources(tmp_path / "ok")
    with pytest.raises(ShardFormatError, match=r"source code: field vocab_size is 512, larger than the model's vocab_size=256"):
        SourceSet(root, 16, vocab_size=256)
    with pytest.raises(ShardFormatError, match="not more than val_samples_per_source"):
        SourceSet(root, 16, vocab_size=512, val_samples_per_source=10_000)
    shard = root / "zh" / "00000.bin"
    data = bytearray(shard.read_bytes())
    data[:8] = b"NOTSHARD"
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardFormatError, match=r"00000.bin: field magic"):
        SourceSet(root, 16, vocab_size=512)
    with pytest.raises(ShardFormatError, match="no manifest"):
        SourceSet(root, 16, vocab_size=512, names=["missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardFormatError, match="no tokenized source"):
        SourceSet(tmp_path / "empty", 16, vocab_size=512)


def test_a_dmu_data_dir_mounted_as_it_is_resolves_to_its_tokenizers_sources(tmp_path):
    """A job may mount the DMU's volume unchanged: shards/<tokenizer id>/<source> (contracts.shards.source_folder)."""
    make_sources(tmp_path / "dmu" / "shards" / "0123456789abcdef", names=("en", "zh"))
    assert SourceSet(tmp_path / "dmu", 16, vocab_size=512).names == ["en", "zh"]
    make_sources(tmp_path / "dmu" / "shards" / "fedcba9876543210", names=("code",))
    with pytest.raises(ShardFormatError, match=r"several tokenizers \['0123456789abcdef', 'fedcba9876543210'\]; set data.tokenizer_id"):
        SourceSet(tmp_path / "dmu", 16, vocab_size=512)
    assert SourceSet(tmp_path / "dmu", 16, vocab_size=512, tokenizer_id="fedcba9876543210").names == ["code"]
    with pytest.raises(ShardFormatError, match="data.tokenizer_id 00000000ffffffff: no "):
        SourceSet(tmp_path / "dmu", 16, vocab_size=512, tokenizer_id="00000000ffffffff")
