"""TSM metric ingest into a real PostgreSQL, vs a named baseline, in one script.

Starts a throwaway PostgreSQL (hack/testenv's launcher), migrates a database per run, and measures:
  baseline  naive per-row ORM inserts: one ``session.add(Sample(...)); session.flush()`` per value,
            one commit per batch (what a first version of an ingest endpoint often does)
  crud      the TSM's ingest path (``tsm_service.crud.ingest.ingest_batch``: COPY into a staging table
            + INSERT … ON CONFLICT), called in-process
  http      end to end: ``heurimentor tsm serve`` (one uvicorn worker, its own process) receiving
            pre-serialised MetricBatch JSON from ``--senders`` concurrent clients (trainer ranks)

A point is one stored metric value (one scalar, one source loss, ...), as Prometheus counts samples;
each StepPoint here carries 6 scalars and 4 source losses = 10 points. Prints points/s of each and
the ratios against the baseline. Target: >= 20,000 points/s over HTTP on 2 cores.

    python bench/tsm_ingest.py [--batches 20] [--steps-per-batch 500] [--senders 2] [--baseline-points 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

from hack.testenv.postgres import PostgresServer  # noqa: E402
from hack.testenv.procs import free_port  # noqa: E402
from heurimentor.contracts.metrics import MetricBatch  # noqa: E402
from tsm_service.crud.ingest import ingest_batch  # noqa: E402
from tsm_service.crud.jobs import get_or_create_job  # noqa: E402
from tsm_service.db import make_engine, make_session_factory  # noqa: E402
from tsm_service.migrations import upgrade  # noqa: E402
from tsm_service.models import Sample, Series  # noqa: E402

SCALARS = ("loss", "grad_norm", "lr", "step_time_seconds", "tokens_per_second", "mfu")
SOURCES = ("web-en", "web-zh", "code", "books")
POINTS_PER_STEP = len(SCALARS) + len(SOURCES)


def make_batch(rank: int, first_step: int, steps: int, tag: str) -> MetricBatch:
    points = [
        {
            "step": s,
            "rank": rank,
            "time": 1.7e9 + s,
            "tokens_seen": s * 4096,
            "scalars": {name: 1.0 + (s % 97) * 1e-3 + i for i, name in enumerate(SCALARS)},
            "source_losses": {src: 2.0 + (s % 89) * 1e-3 + i for i, src in enumerate(SOURCES)},
        }
        for s in range(first_step, first_step + steps)
    ]
    return MetricBatch.model_validate({"batch_id": f"{tag}-r{rank}-{first_step}", "points": points})


def run_baseline(url: str, points: int) -> float:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    steps_per_batch = 100
    batches = max(1, points // (steps_per_batch * POINTS_PER_STEP))
    started = time.perf_counter()
    with sessions() as session:
        job = get_or_create_job(session, name="baseline", now=time.time())
        session.commit()
        series: dict[tuple[str, str], int] = {}
        for b in range(batches):
            batch = make_batch(0, b * steps_per_batch, steps_per_batch, "baseline")
            for p in batch.points:
                values = [("scalar", k, v) for k, v in p.scalars.items()] + [("source_loss", k, v) for k, v in p.source_losses.items()]
                for kind, name, value in values:
                    if (kind, name) not in series:
                        found = session.scalars(
                            select(Series).where(Series.job_id == job.id, Series.kind == kind, Series.name == name)
                        ).one_or_none()
                        if found is None:
                            found = Series(job_id=job.id, kind=kind, name=name)
                            session.add(found)
                            session.flush()
                        series[(kind, name)] = found.id
                    session.add(Sample(series_id=series[(kind, name)], step=p.step, rank=p.rank, value=value, time=p.time))
                    session.flush()
            session.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return batches * steps_per_batch * POINTS_PER_STEP / elapsed


def run_crud(url: str, batches: int, steps_per_batch: int) -> float:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    prepared = [make_batch(b % 2, (b // 2) * steps_per_batch, steps_per_batch, "crud") for b in range(batches)]
    started = time.perf_counter()
    for batch in prepared:
        with sessions() as session:
            ingest_batch(session, job_name="crud", batch=batch, now=time.time())
            session.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return batches * steps_per_batch * POINTS_PER_STEP / elapsed


def run_http(url: str, batches: int, steps_per_batch: int, senders: int) -> tuple[float, float]:
    port = free_port()
    env = {
        **os.environ,
        "HEURIMENTOR_TSM_DATABASE_URL": url,
        "HEURIMENTOR_TSM_PORT": str(port),
        "HEURIMENTOR_TSM_EVALUATE_INTERVAL_SECONDS": "0",
        "HEURIMENTOR_TSM_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from heurimentor.cli import app; app()", "tsm", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tsm serve did not become ready: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        bodies = [
            [make_batch(rank, b * steps_per_batch, steps_per_batch, "http").model_dump_json().encode() for b in range(batches // senders)]
            for rank in range(senders)
        ]
        errors: list[str] = []

        def send(rank: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as client:
                for body in bodies[rank]:
                    response = client.post("/v1/jobs/http/metrics", content=body, headers={"Content-Type": "application/json"})
                    if response.status_code != 200:
                        errors.append(f"{response.status_code} {response.text[:200]}")

        threads = [threading.Thread(target=send, args=(rank,)) for rank in range(senders)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise RuntimeError(f"ingest failed: {errors[:3]}")
        sent = senders * (batches // senders) * steps_per_batch
        return sent * POINTS_PER_STEP / elapsed, sent / elapsed
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--steps-per-batch", type=int, default=500)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--baseline-points", type=int, default=5000)
    args = parser.parse_args()

    pg = PostgresServer()
    pg.start()
    try:
        urls = {}
        for name in ("baseline", "crud", "http"):
            urls[name] = pg.create_database(f"bench_{name}")
            upgrade(urls[name])
        baseline = run_baseline(urls["baseline"], args.baseline_points)
        crud = run_crud(urls["crud"], args.batches, args.steps_per_batch)
        http, step_points = run_http(urls["http"], args.batches, args.steps_per_batch, args.senders)
    finally:
        pg.stop()
    print(f"PostgreSQL 15 (throwaway, fsync off), {os.cpu_count()} CPUs; point = one stored value, {POINTS_PER_STEP} per StepPoint")
    print(f"baseline  per-row ORM add+flush     {baseline:>10,.0f} points/s")
    print(f"crud      COPY + upsert in-process  {crud:>10,.0f} points/s   {crud / baseline:6.1f}x baseline")
    print(
        f"http      tsm serve, {args.senders} senders      {http:>10,.0f} points/s   {http / baseline:6.1f}x baseline"
        f"   ({step_points:,.0f} StepPoints/s; target >= 20,000 points/s: {'met' if http >= 20_000 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
