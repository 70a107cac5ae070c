"""Whole-pipeline throughput on real text: the stages, in process and ``heurimentor dmu ingest``, same documents.

The input is the quality set of bench/dmu_eval_set.py (good EN/ZH documents of ~2 KB, junk,
other languages) written as JSONL, repeated ``--copies`` times with a counter appended so that
copies are not exact duplicates of each other. Figures in docs per CPU second (the machine is
shared, so wall seconds say little; they are printed too), each against the goal of 5,000:

* in process: ``execute_run`` (reader, stages, dedup, kept text, index segments, checkpoints,
  exclusion log; SQLite), no tokenizer, in a process that has not run lingua yet, as the CLI,
* CLI: ``heurimentor dmu ingest`` as a subprocess on a fresh data dir (includes its start-up),
* stages: normalize + language id + rules (``DocumentProcessor``) + dedup, no I/O, models warm,
* baseline: the same stages of the pipeline at ``--baseline-rev`` (its ``dmu_service`` taken from
  git into a temporary folder and run in a subprocess on the same input), for the speed-up.

It also prints how often lingua still runs (the fast path decides the rest) and whether the
fast path's decisions agree with lingua on every document.

    .venv/bin/python bench/dmu_throughput.py [--copies 2] [--baseline-rev REV | --no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# --code DIR: import dmu_service from DIR (the baseline's copy), for the stages measurement only.
if "--code" in sys.argv:
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])

from dmu_service.db import make_engine, make_session_factory  # noqa: E402
from dmu_service.migrations import upgrade  # noqa: E402
from dmu_service.models import Source  # noqa: E402
from dmu_service.pipeline import langid  # noqa: E402
from dmu_service.pipeline.config import PipelineConfig  # noqa: E402
from dmu_service.pipeline.dedup import Deduplicator  # noqa: E402
from dmu_service.pipeline.normalize import normalize  # noqa: E402
from dmu_service.pipeline.process import DocumentProcessor  # noqa: E402
from dmu_service.pipeline.readers import Record  # noqa: E402
from dmu_service.pipeline.runner import execute_run, start_run  # noqa: E402
from hack import dmu_eval  # noqa: E402

GOAL = 5000  # docs per CPU second, end to end (issue 12)
# The pipeline before the throughput work of issue 12 (per-document rules, lingua models preloaded).
BASELINE_REV = "cbdfdcf"


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

    def run(texts: list[str]) -> None:
        processor, dedup = DocumentProcessor(cfg), Deduplicator(cfg.dedup)
        for i in range(0, len(texts), cfg.batch_docs):
            processed = processor.process([Record(j, t) for j, t in enumerate(texts[i : i + cfg.batch_docs], start=i)])
            dedup.decide([p.text for p in processed if p.outcome == "ok"])

    run(texts[: len(texts) // 2])  # warm up: lingua's models for every language in the input
    cpu, wall = time.process_time(), time.perf_counter()
    run(texts)
    return len(texts), time.process_time() - cpu, time.perf_counter() - wall


def baseline_stages(path: Path, rev: str, work: Path) -> tuple[float, float]:
    """(CPU s, wall s) of ``stages`` with the ``dmu_service`` of git revision ``rev``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "dmu_service"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    out = subprocess.run(
        [sys.executable, __file__, "--stages-only", str(path), "--code", str(work)], check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["cpu"], result["wall"]


def lingua_use(path: Path, copies: int) -> tuple[float, float, int]:
    """(share of documents lingua still sees, agreement of the pipeline's language decisions with
    lingua on every document, documents compared), on the first copy of the input."""
    cfg = PipelineConfig.for_source("mixed").langid
    lines = open(path, encoding="utf-8").readlines()
    texts = [normalize(json.loads(line)["text"]) for line in lines[: len(lines) // copies]]
    samples = [t[: cfg.sample_chars] for t in texts]
    undecided = sum(langid.fast_detect(s) is None for s in samples)

    def decisions(fast_path: bool) -> list[tuple[str, bool]]:
        detected = langid.detect_batch(texts, sample_chars=cfg.sample_chars, fast_path=fast_path)
        return [(code, code in cfg.languages and confidence >= cfg.min_confidence) for code, confidence in detected]

    with_fast_path, lingua_only = decisions(True), decisions(False)
    # A document agrees when both keep it as the same language, or both drop it.
    agree = sum(a == b or (not a[1] and not b[1]) for a, b in zip(with_fast_path, lingua_only))
    return undecided / len(texts), agree / len(texts), len(texts)


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
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision whose stages are the baseline")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--stages-only", type=Path, help=argparse.SUPPRESS)  # the baseline's subprocess
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_only:
        _, cpu, wall = stages(args.stages_only)
        print(json.dumps({"cpu": cpu, "wall": wall}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "input.jsonl"
        n, mean_bytes = write_input(path, args.copies)
        print(f"input: {n} documents, {mean_bytes:.0f} bytes on average")
        (tmp / "a").mkdir()
        run_cpu, run_wall, counts = in_process(path, tmp / "a")  # first: it loads lingua's models, as the CLI must
        (tmp / "b").mkdir()
        cli_cpu, cli_wall = cli(path, tmp / "b")
        _, stage_cpu, stage_wall = stages(path)
        rows = [
            ("in process (execute_run)", run_cpu, run_wall),
            ("heurimentor dmu ingest", cli_cpu, cli_wall),
            ("stages (no I/O, models warm)", stage_cpu, stage_wall),
        ]
        if not args.no_baseline:
            (tmp / "baseline").mkdir()
            base_cpu, base_wall = baseline_stages(path, args.baseline_rev, tmp / "baseline")
            rows.append((f"baseline stages ({args.baseline_rev})", base_cpu, base_wall))
        rate, agreement, compared = lingua_use(path, args.copies)
        print(
            f"kept {counts['kept']}, near_dup {counts['near_dup']}, exact_dup {counts['exact_dup']}, "
            f"language {counts['language']}, filtered {sum(counts['filtered'].values())}"
        )
        print(f"{'':<34}{'docs/CPU s':>11}{'of goal':>9}{'docs/s wall':>13}")
        for name, cpu, wall in rows:
            print(f"{name:<34}{n / cpu:>11.0f}{n / cpu / GOAL:>9.2f}{n / wall:>13.0f}")
        if not args.no_baseline:
            print(f"stages vs baseline: {base_cpu / stage_cpu:.2f}x the docs per CPU second")
        print(f"CLI / in process: {cli_cpu / run_cpu:.2f}x CPU time (target <= 1.5x)")
        print(f"in process / goal of {GOAL:,} docs/CPU s: {n / run_cpu / GOAL:.2f}")
        print(
            f"lingua runs on {rate:.1%} of the {compared} documents (the fast path decides the rest); "
            f"language decisions agree with lingua on every document for {agreement:.1%}"
        )


if __name__ == "__main__":
    main()
