"""Peak memory of a full ingestion run on a ~1 GB JSONL file (bounded-memory check).

The file holds normal documents plus gigantic ones (tens of MB on one line) that the reader must
drain without holding; most of the bytes are in those. Reports peak RSS of the ingesting process
(and how much of it is the fixed floor of libraries and lingua's models), against the file size and
against a naive reader that json-parses every whole line (baseline: it holds each giant line whole).

    .venv/bin/python bench/dmu_memory.py [--gb 1.0] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NORMAL_DOCS = 4000
GIANT_BYTES = 48 << 20


def build(path: Path, gigabytes: float) -> None:
    from tests.dmu.testlib import make_doc

    target = int(gigabytes * (1 << 30))
    written = 0
    with open(path, "wb") as f:
        for i in range(NORMAL_DOCS):
            line = json.dumps({"text": make_doc("en" if i % 2 else "zh", i)}, ensure_ascii=False).encode() + b"\n"
            f.write(line)
            written += len(line)
        chunk = b"lorem " * (1 << 17)
        while written < target:
            f.write(b'{"text": "')
            for _ in range(GIANT_BYTES // len(chunk)):
                f.write(chunk)
            f.write(b'"}\n')
            written += GIANT_BYTES + 13


def child(mode: str, path: str, workdir: str) -> None:
    if mode == "naive":
        n = 0
        with open(path, "rb") as f:
            for line in f:
                n += isinstance(json.loads(line).get("text"), str)
        result = {"docs": n}
    else:
        from dmu_service.db import make_engine, make_session_factory
        from dmu_service.migrations import upgrade
        from dmu_service.models import Source
        from dmu_service.pipeline import langid
        from dmu_service.pipeline.runner import execute_run, start_run

        langid.detect("load the language models first")  # lingua's models are most of the fixed floor
        floor_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        url = f"sqlite:///{workdir}/bench.db"
        upgrade(url)
        sessions = make_session_factory(make_engine(url))
        with sessions() as s:
            source = Source(name="bench", language="mixed")
            s.add(source)
            s.commit()
            run_id = start_run(session=s, source=source, inputs=[path], tokenizer_path=None).id
        result = execute_run(session_factory=sessions, data_dir=Path(workdir) / "data", run_id=run_id).counts
        result["floor_mb"] = floor_mb
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        path = Path(workdir) / "big.jsonl"
        build(path, args.gb)
        size_mb = path.stat().st_size / (1 << 20)
        results = {}
        for mode in ("pipeline", "naive"):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(path), workdir], check=True, capture_output=True, text=True
            ).stdout
            results[mode] = (json.loads(out.strip().splitlines()[-1]), time.perf_counter() - started)
        counts, seconds = results["pipeline"]
        print(f"input {size_mb:.0f} MiB: {NORMAL_DOCS} normal documents + gigantic {GIANT_BYTES >> 20} MiB lines")
        print(
            f"pipeline run: peak RSS {counts['peak_rss_mb']:.0f} MiB in {seconds:.0f} s (of which {counts['floor_mb']:.0f} MiB "
            f"before reading: interpreter, libraries, lingua models); read {counts['read']}, "
            f"too_long {counts['too_long']}, kept {counts['kept']}"
        )
        naive, naive_s = results["naive"]
        print(f"naive reader (json.loads per whole line, baseline): peak RSS {naive['peak_rss_mb']:.0f} MiB in {naive_s:.0f} s")
        growth = counts["peak_rss_mb"] - counts["floor_mb"]
        print(
            f"pipeline growth above its floor: {growth:.0f} MiB = {growth / size_mb:.3f} x input size "
            f"(naive reader: {naive['peak_rss_mb'] / size_mb:.3f} x, dominated by one {GIANT_BYTES >> 20} MiB line held 3 times)"
        )


if __name__ == "__main__":
    main()
