"""``heurimentor demo``: the main job on real English and Chinese text, one machine, embedded defaults.

1. reads man pages, fortunes and the Debian Edu manual (EN and ZH, Debian packages) into one raw
   JSONL per source, and trains the bilingual BPE tokenizer on them;
2. starts the DMU and the TSM (SQLite, loopback ports), registers the sources over REST and
   ingests them with the default pipeline: clean, language id, quality rules, exact and near dedup,
   tokenize; the near duplicates it found are shown side by side;
3. publishes a mixture of the six real sources; the TSM's policy adapts it while the model trains;
4. trains a small Aquila2 model (GQA) with torchrun (2 workers, gloo) that follows the mixture live;
   halfway a careless user puts the junk source in the mixture at half the weight (REST), the
   TSM sees its loss make no progress and takes weight away; later a person changes the mixture
   (PUT with If-Match) and the trainer adopts it at the next step;
5. quantizes the final model to int4 (perplexity retained per language), exports it in the Hugging
   Face format, reloads it with ``transformers`` and generates a line per language;
6. writes ``demo.png``, ``index.html`` and ``summary.json`` into the work folder.

Every run starts clean: the work folder is wiped first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from heurimentor.demo.corpus import JUNK, SOURCES, RawCorpus, write_raw_corpus
from heurimentor.demo.ingest import ingest, near_duplicates, print_near_duplicates, progress_bar, runs_table
from heurimentor.demo.services import DemoError, Services, cli, started_services, stop_group

console = Console()
MIXTURE = "demo"
JOB = "demo"


@dataclass
class DemoConfig:
    workdir: Path
    steps: int = 240
    workers: int = 2
    policy: str = "learning_progress"
    vocab_size: int = 4096  # a small model learns a small vocabulary faster (ZH still ~1.6 chars/token)
    corpus_scale: float = 1.0  # share of each source's documents (the test uses less)
    junk_weight: float = 0.5  # the careless user's share for the junk source
    seed: int = 0


@dataclass
class MixtureChange:
    """A REST change the demo made while the trainer ran, and the step the trainer adopted it at."""

    who: str
    version: int
    weights: dict[str, float]
    step_in_progress: int  # the step the trainer was running when the PUT returned
    adopted_at_step: int | None = None
    adopted_version: int | None = None  # a newer one when the TSM wrote on top of it before that step
    retries: int = 0  # 412 answers (the TSM wrote a version in between) before it went through


@dataclass
class DemoResult:
    config: DemoConfig
    tokenizer: dict
    raw_bytes: dict[str, int]
    runs: list[dict]
    near_duplicates: list[tuple[str, str, str, float]]  # (duplicate, kept, rule, similarity)
    steps: dict[int, int] = field(default_factory=dict)  # step -> mixture version trained on
    versions: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # "loss", "val/<source>"
    changes: list[MixtureChange] = field(default_factory=list)
    checks: dict = field(default_factory=dict)  # heurimentor.demo.checks.ModelChecks as a dict
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(config: DemoConfig) -> DemoResult:
    """Run the demo end to end, print what each part did, write the pictures; returns the figures."""
    from heurimentor.demo import checks, report

    work = config.workdir
    if work.exists():
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True)
    started = time.monotonic()
    seconds: dict[str, float] = {}

    console.rule("[bold]1. real text and the tokenizer")
    mark = time.monotonic()
    raw = write_raw_corpus(work / "raw", scale=config.corpus_scale, seed=config.seed)
    console.print(_corpus_table(raw))
    tokenizer = _train_tokenizer(raw, work / "tokenizer", config)
    seconds["corpus + tokenizer"] = time.monotonic() - mark

    with started_services(work, policy=config.policy, mixture=MIXTURE) as services:
        console.print(f"DMU {services.dmu_url}/docs   TSM {services.tsm_url}/docs   (logs in {services.logs})")
        console.rule("[bold]2. DMU ingest (default pipeline)")
        mark = time.monotonic()
        runs = ingest(services, raw, work / "tokenizer" / "tokenizer.json", console)
        console.print(runs_table(runs))
        near = near_duplicates(services, runs, raw)
        print_near_duplicates(near, console)
        seconds["ingest"] = time.monotonic() - mark
        result = DemoResult(config, tokenizer, raw.bytes, runs, near)

        console.rule("[bold]3. train: torchrun, 2 workers; the TSM adapts the mixture")
        mark = time.monotonic()
        shard_root = next((work / "dmu" / "shards").iterdir())
        created = httpx.post(
            f"{services.dmu_url}/mixtures",
            headers=services.auth,
            json={
                "name": MIXTURE,
                "weights": {s.name: 1.0 for s in SOURCES},
                "author": "demo",
                "reason": "start: equal parts of the six real sources",
            },
        )
        created.raise_for_status()
        console.print(f"mixture {MIXTURE} v{created.json()['version']}: equal parts of {', '.join(s.name for s in SOURCES)}")
        model = checks.demo_model_args(tokenizer["model_vocab"])
        console.print(
            f"model: Aquila2, {model['n_layers']} layers, dim {model['dim']}, {model['n_heads']} heads / {model['n_kv_heads']} KV heads (GQA), "
            f"vocab {model['vocab_size']}: {checks.parameter_count(model):,} parameters"
        )
        _train(services, work, shard_root, model, config, result)
        seconds["train"] = time.monotonic() - mark
        _collect(services, work, result)

    console.rule("[bold]4. baselines, int4, Hugging Face")
    mark = time.monotonic()
    result.checks = checks.run_checks(work, shard_root, result.curves, console=console)
    seconds["checks"] = time.monotonic() - mark

    console.rule("[bold]what happened")
    report.print_summary(result, console)
    mark = time.monotonic()
    png, page = report.write_pictures(result, work)
    seconds["pictures"] = time.monotonic() - mark
    seconds["total"] = time.monotonic() - started
    result.seconds = seconds
    report.write_page(result, page, png)
    console.print(
        f"[green]demo finished in {seconds['total']:.0f} s[/green]; plot {png}, page {page}, figures {work / 'summary.json'}; "
        f"everything is under {work}"
    )
    return result


# ----------------------------------------------------------------------------------- tokenizer


def _corpus_table(raw: RawCorpus) -> Table:
    table = Table("source", "from", "documents", "MB (UTF-8)", title="raw data, one JSONL per source (Debian packages)")
    for source in (*SOURCES, JUNK):
        table.add_row(source.name, source.origin, f"{len(raw.docs[source.name]):,}", f"{raw.bytes[source.name] / 1e6:.2f}")
    return table


def _train_tokenizer(raw: RawCorpus, folder: Path, config: DemoConfig) -> dict:
    from heurimentor_trainer.tokenizer import load_tokenizer, model_vocab_size, train_tokenizer

    with console.status("training the byte-level BPE tokenizer on the EN and ZH documents"):
        report = train_tokenizer(
            [raw.tokenizer_files["en"]], [raw.tokenizer_files["zh"]], folder, vocab_size=config.vocab_size, seed=config.seed
        )
    model_vocab = model_vocab_size(load_tokenizer(folder / "tokenizer.json"))
    console.print(
        f"tokenizer: {report.vocab_size:,} tokens (byte-level BPE, trained on {report.train_bytes['en'] / 1e6:.1f} MB EN + "
        f"{report.train_bytes['zh'] / 1e6:.1f} MB ZH); held-out chars/token EN {report.chars_per_token['en']:.2f}, "
        f"ZH {report.chars_per_token['zh']:.2f}"
    )
    return {
        "vocab_size": report.vocab_size,
        "model_vocab": model_vocab,
        "chars_per_token": report.chars_per_token,
        "train_bytes": report.train_bytes,
    }


# --------------------------------------------------------------------------------------- train


def _train(services: Services, work: Path, shard_root: Path, model: dict, config: DemoConfig, result: DemoResult) -> None:
    from heurimentor.demo.checks import SEQ_LEN, VAL_SAMPLES

    train_yaml = work / "train.yaml"
    train_yaml.write_text(
        json.dumps(
            {
                "job": JOB,
                "preset": "debug",
                "model": model,
                "steps": config.steps,
                "global_batch": 16,
                "micro_batch": 8,
                "seq_len": SEQ_LEN,
                "seed": config.seed,
                "optim": {"lr": 1e-2, "warmup_steps": 20},
                "data": {
                    "shard_root": str(shard_root),
                    "mixture": MIXTURE,
                    "dmu_url": services.dmu_url,
                    "poll_wait_seconds": 5,
                    "val_samples_per_source": VAL_SAMPLES,
                    "sample_log_dir": str(work / "samples"),
                },
                "checkpoint": {"dir": str(work / "checkpoints"), "interval": config.steps, "keep": 1},
                "metrics": {
                    "tsm_url": services.tsm_url,
                    "eval_interval": 10,
                    "eval_batches": VAL_SAMPLES // 8,
                    "flush_interval_seconds": 0.5,
                },
            },
            indent=2,
        )
    )
    log = services.logs / "train.log"
    command = cli() + ["train", "--config", str(train_yaml), "--nproc-per-node", str(config.workers)]
    with open(log, "a") as out:
        process = subprocess.Popen(command, env=services.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # The REST changes come at half and three quarters of the run, each just after the trainer took up a
    # TSM version: a person edits between two policy updates, so the trainer trains on the edit itself
    # for a while (the TSM's next update, 10 steps later, starts from it). 15 steps on, they come anyway.
    changes = [
        (config.steps // 2, lambda: _add_junk(services, work, config.junk_weight)),
        ((3 * config.steps) // 4, lambda: _person_change(services, work)),
    ]
    armed_version = None
    try:
        with progress_bar(console) as progress:
            task = progress.add_task("train (starting torchrun)", total=config.steps)
            while process.poll() is None:
                step, version = _step_in_progress(work), _version_in_progress(work)
                progress.update(task, completed=max(step - 1, 0), description=f"train, mixture v{version}")
                if len(result.changes) < len(changes) and step >= changes[len(result.changes)][0]:
                    due, change = changes[len(result.changes)]
                    armed_version = version if armed_version is None else armed_version
                    if version != armed_version or step >= due + 15:
                        result.changes.append(change())
                        progress.console.print(_change_line(result.changes[-1]))
                        armed_version = None
                time.sleep(0.1)
            progress.update(task, completed=config.steps)
    finally:
        stop_group(process)
    if process.returncode:
        raise DemoError(f"training failed (exit {process.returncode}); log {log}:\n" + "\n".join(log.read_text().splitlines()[-30:]))


def _sample_log(work: Path) -> list[dict]:
    """Rank 0's sample log: one line per step, written when the step drew its batch (complete lines only)."""
    path = work / "samples" / "rank0.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines]


def _step_in_progress(work: Path) -> int:
    entries = _sample_log(work)
    return entries[-1]["step"] if entries else 0


def _version_in_progress(work: Path) -> int | None:
    entries = _sample_log(work)
    return entries[-1]["version"] if entries else None


def _put_mixture(services: Services, work: Path, who: str, reason: str, change) -> MixtureChange:
    """GET the current version, PUT ``change(weights)`` with If-Match; re-read and retry on 412."""
    retries = 0
    while True:
        current = httpx.get(f"{services.dmu_url}/mixtures/{MIXTURE}")
        current.raise_for_status()
        weights = change(dict(current.json()["weights"]))
        answer = httpx.put(
            f"{services.dmu_url}/mixtures/{MIXTURE}",
            headers={**services.auth, "If-Match": current.headers["ETag"]},
            json={"weights": weights, "author": who, "reason": reason},
        )
        if answer.status_code == 412 and retries < 5:
            retries += 1
            continue
        answer.raise_for_status()
        body = answer.json()
        return MixtureChange(who, body["version"], body["weights"], _step_in_progress(work), retries=retries)


def _add_junk(services: Services, work: Path, share: float) -> MixtureChange:
    def with_junk(weights: dict[str, float]) -> dict[str, float]:
        real = {s: w for s, w in weights.items() if s != JUNK.name}
        total = sum(real.values())
        return {**{s: (1 - share) * w / total for s, w in real.items()}, JUNK.name: share}

    return _put_mixture(services, work, "careless-user", f"add {JUNK.name} at {share:.0%}: more English data!", with_junk)


def _person_change(services: Services, work: Path) -> MixtureChange:
    def more_chinese(weights: dict[str, float]) -> dict[str, float]:
        return {s: w * (2.0 if s.endswith("-zh") else 1.0) for s, w in weights.items()}

    return _put_mixture(services, work, "person", "twice the Chinese share for the last quarter", more_chinese)


def _change_line(change: MixtureChange) -> str:
    weights = ", ".join(f"{s} {w:.2f}" for s, w in sorted(change.weights.items()))
    retried = f" (after {change.retries} x 412: the TSM wrote a version first)" if change.retries else ""
    return f"step {change.step_in_progress}: {change.who} PUT /mixtures/{MIXTURE} with If-Match -> v{change.version}{retried}: {weights}"


def _collect(services: Services, work: Path, result: DemoResult) -> None:
    """What the services and the trainer's sample log say happened."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the TSM evaluates every second; wait until it has seen the end
        job = httpx.get(f"{services.tsm_url}/v1/jobs/{JOB}").json()
        if job.get("completed_step") is not None and job["evaluated_step"] >= job["last_step"]:
            break
        time.sleep(0.5)
    result.steps = {e["step"]: e["version"] for e in _sample_log(work)}
    for change in result.changes:
        change.adopted_at_step = min((s for s, v in result.steps.items() if v is not None and v >= change.version), default=None)
        change.adopted_version = result.steps.get(change.adopted_at_step)
    result.versions = httpx.get(f"{services.dmu_url}/mixtures/{MIXTURE}/versions").json()
    result.events = httpx.get(f"{services.tsm_url}/v1/jobs/{JOB}/events").json()
    loss = httpx.get(f"{services.tsm_url}/v1/jobs/{JOB}/curves/scalar/loss", params={"max_points": 10_000}).json()["points"]
    result.curves["loss"] = [(p["step"], p["value"]) for p in loss]
    for source in (*SOURCES, JUNK):
        points = httpx.get(f"{services.tsm_url}/v1/jobs/{JOB}/curves/val_loss/{source.name}", params={"max_points": 10_000}).json()
        result.curves[f"val/{source.name}"] = [(p["step"], p["value"]) for p in points["points"]]
