"""Whole-pipeline throughput on real text: in process vs ``heurimentor dmu ingest``, same documents.

The input is the quality set of bench/dmu_eval_set.py (good EN/ZH documents of ~2 KB, junk,
other languages) written as JSONL, repeated ``--copies`` times with a counter appended so that
copies are not exact duplicates of each other. Three figures, each in docs per CPU second (the
machine is shared; wall seconds are printed too):

* stages: normalize + language id + rules (``DocumentProcessor``) + dedup, no I/O,
* in process: ``execute_run`` (reader, stages, dedup, kept text, index segments, checkpoints,
  exclusion log; SQLite), no tokenizer,
* CLI: ``heurimentor dmu ingest`` as a subprocess on a fresh data dir (includes its start-up).

    .venv/bin/python bench/dmu_throughput.py [--copies 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmu_service.db import make_engine, make_session_factory  # noqa: E402
from dmu_service.migrations import upgrade  # noqa: E402
from dmu_service.models import Source  # noqa: E402
from dmu_service.pipeline.config import PipelineConfig  # noqa: E402
from dmu_service.pipeline.dedup import Deduplicator  # noqa: E402
from dmu_service.pipeline.process import DocumentProcessor  # noqa: E402
from dmu_service.pipeline.readers import Record  # noqa: E402
from dmu_service.pipeline.runner import execute_run, start_run  # noqa: E402
from hack import dmu_eval  # noqa: E402


def write_input(path: Path, copies: int) -> tuple[int, float]:
    docs = dmu_eval.load_or_build().quality_set()
    n = size = 0
    with open(path, "w", encoding="utf-8") as f:
        for copy in range(copies):
            for d in docs:
                text = d.text if copy == 0 else f"{d.text}\n{copy}"
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                n += 1
                size += len(text.encode())
    return n, size / n


def stages(path: Path) -> tuple[int, float, float]:
    cfg = PipelineConfig.for_source("mixed")
    texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
    processor, dedup = DocumentProcessor(cfg), Deduplicator(cfg.dedup)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(texts), cfg.batch_docs):
        processed = processor.process([Record(j, t) for j, t in enumerate(texts[i : i + cfg.batch_docs], start=i)])
        dedup.decide([p.text for p in processed if p.outcome == "ok"])
    return len(texts), time.process_time() - cpu, time.perf_counter() - wall


def in_process(path: Path, work: Path) -> tuple[float, float, dict]:
    url = f"sqlite:///{work / 'dmu.sqlite3'}"
    upgrade(url)
    sessions = make_session_factory(make_engine(url))
    with sessions() as session:
        source = Source(name="bench", language="mixed", pipeline={})
        session.add(source)
        session.commit()
        run = start_run(session=session, source=source, inputs=[path], tokenizer_path=None)
    cpu, wall = time.process_time(), time.perf_counter()
    run = execute_run(session_factory=sessions, data_dir=work / "data", run_id=run.id)
    return time.process_time() - cpu, time.perf_counter() - wall, run.counts


def cli(path: Path, work: Path) -> tuple[float, float]:
    env = {
        **os.environ,
        "HEURIMENTOR_DMU_DATA_DIR": str(work / "data"),
        "HEURIMENTOR_DMU_DATABASE_URL": f"sqlite:///{work / 'dmu.sqlite3'}",
    }
    heurimentor = str(Path(sys.executable).with_name("heurimentor"))
    subprocess.run([heurimentor, "dmu", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([heurimentor, "dmu", "source", "add", "bench", "--language", "mixed"], env=env, check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run([heurimentor, "dmu", "ingest", "bench", str(path)], env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "input.jsonl"
        n, mean_bytes = write_input(path, args.copies)
        print(f"input: {n} documents, {mean_bytes:.0f} bytes on average")
        _, stage_cpu, stage_wall = stages(path)
        (tmp / "a").mkdir()
        run_cpu, run_wall, counts = in_process(path, tmp / "a")
        (tmp / "b").mkdir()
        cli_cpu, cli_wall = cli(path, tmp / "b")
        print(
            f"kept {counts['kept']}, near_dup {counts['near_dup']}, exact_dup {counts['exact_dup']}, "
            f"language {counts['language']}, filtered {sum(counts['filtered'].values())}"
        )
        print(f"{'':<34}{'docs/CPU s':>11}{'docs/s wall':>13}")
        for name, cpu, wall in (
            ("stages (no I/O)", stage_cpu, stage_wall),
            ("in process (execute_run)", run_cpu, run_wall),
            ("heurimentor dmu ingest", cli_cpu, cli_wall),
        ):
            print(f"{name:<34}{n / cpu:>11.0f}{n / wall:>13.0f}")
        print(f"CLI / in process: {cli_cpu / run_cpu:.2f}x CPU time (target <= 1.5x); goal >= 5,000 docs/CPU s end to end")


if __name__ == "__main__":
    main()
