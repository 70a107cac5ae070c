"""The Ray Data backend produces the same kept set, counts and byte-identical shards as the local one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmu_service.pipeline.ray_backend import RayBackend
from tests.dmu.test_dmu_ingest import Env, kept_texts, shard_digests
from tests.dmu.testlib import make_doc

# Ray Data's own DataContext emits these on import; they are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def ray_backend():
    backend = RayBackend(num_cpus=1, window_batches=4)
    yield backend
    backend.shutdown()


def test_ray_and_local_backends_agree(tmp_path: Path, tokenizer_path: Path, ray_backend) -> None:
    corpus = tmp_path / "mixed.jsonl"
    with open(corpus, "w") as f:
        for seed in list(range(30)) + list(range(10)):
            f.write(json.dumps({"text": make_doc("en" if seed % 3 else "zh", seed)}, ensure_ascii=False) + "\n")
            if seed % 7 == 0:
                f.write(json.dumps({"text": make_doc("en", seed) + "\n\nWith a small edit at the end."}) + "\n")
        f.write("{broken json\n")
    results = {}
    for backend in ("local", "ray"):
        env = Env(f"sqlite:///{tmp_path / backend}.db", tmp_path / backend)
        env.source("web", "mixed", {"batch_docs": 8, "tokenize": {"commit_every_docs": 16}})
        run = env.ingest("web", [corpus], tokenizer_path, map_batches=ray_backend if backend == "ray" else None)
        results[backend] = (run.counts, kept_texts(env.data_dir, "web"), shard_digests(env.data_dir))
    assert results["local"][0]["kept"] > 0 and results["local"][0]["near_dup"] > 0
    assert results["ray"] == results["local"]
