"""``heurimentor demo``: the main job on one machine, embedded defaults, every part real.

1. trains a bilingual BPE tokenizer on the bundled EN/ZH sample corpus;
2. writes raw English and Chinese crawls with planted exact and near duplicates and junk;
3. starts the DMU and the TSM (SQLite, loopback ports) and migrates their databases first;
4. registers the sources and ingests them: clean, language-id, quality rules, dedup, tokenize;
5. publishes a mixture and tells the TSM to adapt it (the policy writes new versions to the DMU);
6. trains a tiny Aquila2 model with torchrun (2 workers, gloo) that follows the mixture live and
   reports to the TSM; then prints what each part did.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

DEMO_TOKEN = secrets.token_urlsafe(32)  # a random token, as production requires (docs/security.md)
SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "trainer" / "heurimentor_trainer" / "sample_corpus"
console = Console()


@dataclass
class DemoConfig:
    workdir: Path
    steps: int = 120
    workers: int = 2
    vocab_size: int = 1024
    policy: str = "learning_progress"
    seed: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli() -> list[str]:
    return [sys.executable, "-m", "heurimentor"]


def _run(args: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "a") as out:
        result = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise SystemExit(f"demo: `{' '.join(args[2:])}` failed (exit {result.returncode}); log {log}:\n{tail}")


@contextmanager
def _service(name: str, args: list[str], env: dict[str, str], url: str, log: Path):
    out = open(log, "a")
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"demo: the {name} exited with {process.returncode}; log {log}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: the {name} was not ready within 60 s; log {log}")
            time.sleep(0.3)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        out.close()


def _sentences(path: Path, splitter: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    parts = [p.strip() for p in text.replace("\n", " ").split(splitter)]
    return [p + splitter for p in parts if len(p) > 8]


def write_raw_corpus(folder: Path, seed: int) -> dict[str, int]:
    """Documents recombined from the sample corpus's sentences, plus planted duplicates and junk."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    planted = {}
    for source, path, splitter, joiner, size in (
        ("web-en", SAMPLE_CORPUS / "en.txt", ".", " ", (10, 18)),
        ("web-zh", SAMPLE_CORPUS / "zh.txt", "。", "", (6, 12)),
    ):
        sentences = _sentences(path, splitter)
        docs = [joiner.join(rng.sample(sentences, rng.randint(*size))) for _ in range(300)]
        exact = [rng.choice(docs) for _ in range(30)]
        near = []
        for _ in range(30):  # a near duplicate: one sentence swapped for another
            parts = docs[rng.randrange(len(docs))].split(joiner if joiner else splitter)
            parts[rng.randrange(len(parts))] = "" if joiner else rng.choice(sentences).rstrip(splitter)
            near.append((joiner if joiner else splitter).join(parts))
        lines = [json.dumps({"text": d}, ensure_ascii=False) for d in docs + exact + near]
        lines += ['{"text": "too short"}', "{not json", json.dumps({"text": ""}), json.dumps({"id": 3})]
        rng.shuffle(lines)
        (folder / f"{source}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        planted[source] = len(lines)
    return planted


def run_demo(config: DemoConfig) -> dict:
    """Run the demo and return what the services report afterwards (also printed)."""
    from heurimentor_trainer.tokenizer import train_tokenizer

    work = config.workdir
    if work.exists():
        shutil.rmtree(work)
    logs = work / "logs"
    logs.mkdir(parents=True)
    started = time.monotonic()

    console.rule("[bold]1. tokenizer")
    report = train_tokenizer(
        [SAMPLE_CORPUS / "en.txt"],
        [SAMPLE_CORPUS / "zh.txt"],
        work / "tokenizer",
        vocab_size=config.vocab_size,
        min_frequency=1,
        seed=config.seed,
    )
    console.print(f"byte-level BPE, {report.vocab_size} tokens; held-out chars/token {report.chars_per_token}")

    console.rule("[bold]2. raw data")
    planted = write_raw_corpus(work / "raw", config.seed)
    console.print(f"raw JSONL lines per source (with planted duplicates and junk): {planted}")

    dmu_port, tsm_port = _free_port(), _free_port()
    dmu_url, tsm_url = f"http://127.0.0.1:{dmu_port}", f"http://127.0.0.1:{tsm_port}"
    env = dict(
        os.environ,
        # development, said explicitly (the default is production): reads open, so the demo's GETs need no token
        HEURIMENTOR_DMU_ENVIRONMENT="development",
        HEURIMENTOR_TSM_ENVIRONMENT="development",
        HEURIMENTOR_DMU_DATA_DIR=str(work / "dmu"),
        HEURIMENTOR_DMU_AUTH_TOKEN=DEMO_TOKEN,
        HEURIMENTOR_DMU_PORT=str(dmu_port),
        HEURIMENTOR_TSM_DATABASE_URL=f"sqlite:///{work / 'tsm.sqlite3'}",
        HEURIMENTOR_TSM_PORT=str(tsm_port),
        HEURIMENTOR_TSM_DMU_URL=dmu_url,
        HEURIMENTOR_TSM_DMU_TOKEN=DEMO_TOKEN,
        HEURIMENTOR_TSM_AUTH_TOKEN=DEMO_TOKEN,
        HEURIMENTOR_TRAIN__METRICS__TSM_TOKEN=DEMO_TOKEN,  # secrets by env, never in the config file
        HEURIMENTOR_TSM_EVALUATE_INTERVAL_SECONDS="2",
        HEURIMENTOR_TSM_POLICY__NAME=config.policy,
        HEURIMENTOR_TSM_POLICY__MIXTURE="demo",
        HEURIMENTOR_TSM_POLICY__WINDOW_STEPS="10",
        HEURIMENTOR_TSM_POLICY__GUARDRAILS__COOLDOWN_STEPS="20",
        OMP_NUM_THREADS="1",
    )
    (work / "dmu").mkdir()

    console.rule("[bold]3. DMU and TSM")
    _run(_cli() + ["dmu", "migrate"], env, logs / "dmu.log")
    _run(_cli() + ["tsm", "migrate"], env, logs / "tsm.log")
    with ExitStack() as stack:
        stack.enter_context(_service("DMU", _cli() + ["dmu", "serve"], env, dmu_url, logs / "dmu.log"))
        stack.enter_context(_service("TSM", _cli() + ["tsm", "serve"], env, tsm_url, logs / "tsm.log"))
        console.print(f"DMU {dmu_url}/docs   TSM {tsm_url}/docs   (logs in {logs})")

        console.rule("[bold]4. ingest: clean, dedup, tokenize")
        tokenizer_json = work / "tokenizer" / "tokenizer.json"
        for source, language in (("web-en", "en"), ("web-zh", "zh")):
            # The sample corpus is short prose: relax the minimum document length for the demo.
            overrides = {"english": {"min_words": 20}} if language == "en" else {"chinese": {"min_chars": 20}}
            _run(
                _cli() + ["dmu", "source", "add", source, "--language", language, "--domain", "web", "--pipeline", json.dumps(overrides)],
                env,
                logs / "ingest.log",
            )
            _run(
                _cli() + ["dmu", "ingest", source, str(work / "raw" / f"{source}.jsonl"), "--tokenizer", str(tokenizer_json)],
                env,
                logs / "ingest.log",
            )
        runs = httpx.get(f"{dmu_url}/runs").json()
        console.print(_runs_table(runs))
        shard_root = next((work / "dmu" / "shards").iterdir())

        console.rule("[bold]5. mixture")
        auth = {"Authorization": f"Bearer {DEMO_TOKEN}"}
        created = httpx.post(
            f"{dmu_url}/mixtures",
            headers=auth,
            json={"name": "demo", "weights": {"web-en": 1.0, "web-zh": 1.0}, "author": "demo", "reason": "start 1:1 as the report"},
        )
        created.raise_for_status()
        console.print(f"mixture demo v{created.json()['version']}: {created.json()['weights']}; TSM policy: {config.policy}")

        console.rule("[bold]6. train (torchrun, elastic, gloo)")
        train_yaml = work / "train.yaml"
        train_yaml.write_text(
            json.dumps(
                {
                    "job": "demo",
                    "preset": "debug",
                    "model": {"vocab_size": _model_vocab(tokenizer_json)},
                    "steps": config.steps,
                    "global_batch": 8,
                    "micro_batch": 2,
                    "seq_len": 64,
                    "seed": config.seed,
                    "optim": {"warmup_steps": 10},
                    "data": {
                        "shard_root": str(shard_root),
                        "mixture": "demo",
                        "dmu_url": dmu_url,
                        "poll_wait_seconds": 5,
                        "val_samples_per_source": 8,
                    },
                    "checkpoint": {"dir": str(work / "checkpoints"), "interval": 40, "keep": 2},
                    "metrics": {"tsm_url": tsm_url, "eval_interval": 20, "flush_interval_seconds": 1.0},
                },
                indent=2,
            )
        )
        _run(_cli() + ["train", "--config", str(train_yaml), "--nproc-per-node", str(config.workers)], env, logs / "train.log")
        time.sleep(3)  # one more TSM evaluation over the last points

        console.rule("[bold]what happened")
        summary = _summarise(dmu_url, tsm_url)
        summary["runs"] = runs
    console.print(f"[green]demo finished in {time.monotonic() - started:.0f} s; everything is under {work}")
    return summary


def _flatten(counts: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in counts.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _runs_table(runs: list[dict]) -> Table:
    """Per-stage counts of each ingestion run, one row per counter, one column per run."""
    flat = [_flatten(run.get("counts", {})) for run in runs]
    table = Table("counter", *(f"{r['source']} ({r['status']})" for r in runs), title="ingestion runs (DMU)")
    for key in sorted({k for f in flat for k in f}):
        table.add_row(key, *(str(f.get(key, "")) for f in flat))
    return table


def _model_vocab(tokenizer_json: Path) -> int:
    from heurimentor_trainer.tokenizer import load_tokenizer, model_vocab_size

    return model_vocab_size(load_tokenizer(tokenizer_json))


def _summarise(dmu_url: str, tsm_url: str) -> dict:
    job = httpx.get(f"{tsm_url}/v1/jobs/demo").json()
    console.print(f"TSM saw step {job['last_step']}, {job['tokens_seen']} tokens, mixture version {job['mixture_version']}")
    for kind, name in (("scalar", "loss"), ("val_loss", "web-en"), ("val_loss", "web-zh")):
        points = httpx.get(f"{tsm_url}/v1/jobs/demo/curves/{kind}/{name}", params={"max_points": 8}).json()["points"]
        if points:
            curve = "  ".join(f"{p['step']}:{p['value']:.2f}" for p in points)
            console.print(f"{kind} {name} (step:value)  {curve}")
    versions = httpx.get(f"{dmu_url}/mixtures/demo/versions").json()
    table = Table("version", "author", "weights", "reason", title="mixture history (DMU)")
    for v in versions:
        table.add_row(str(v["version"]), v["author"], json.dumps({k: round(w, 3) for k, w in v["weights"].items()}), v["reason"][:80])
    console.print(table)
    events = httpx.get(f"{tsm_url}/v1/jobs/demo/events").json()
    for event in events:
        console.print(f"TSM event at step {event['step']}: [bold]{event['kind']}[/bold] {event['message'][:160]}")
    if not events:
        console.print("TSM events: none")
    return {"job": job, "mixture_versions": versions, "events": events}
