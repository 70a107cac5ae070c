"""The demo's DMU ingest: register the sources over REST, ingest them, and read back what was dropped."""

from __future__ import annotations

from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from heurimentor.demo.corpus import JUNK, SOURCES, RawCorpus
from heurimentor.demo.services import DemoError, Services, run_cli


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def ingest(services: Services, raw: RawCorpus, tokenizer_json: Path, console: Console) -> list[dict]:
    """Register every source over REST, then ingest its raw JSONL (`heurimentor dmu ingest`), one after another:
    each run dedups against everything kept before it."""
    sources = (*SOURCES, JUNK)
    with progress_bar(console) as progress:
        task = progress.add_task("ingest", total=len(sources))
        for source in sources:
            progress.update(task, description=f"ingest {source.name}")
            registered = httpx.post(
                f"{services.dmu_url}/sources",
                headers=services.auth,
                json={"name": source.name, "language": source.language, "domain": source.corpus, "location": str(raw.files[source.name])},
            )
            if registered.status_code != 201:
                raise DemoError(f"POST /sources {source.name}: {registered.status_code} {registered.text[:300]}")
            run_cli(
                ["dmu", "ingest", source.name, str(raw.files[source.name]), "--tokenizer", str(tokenizer_json)],
                services.env,
                services.logs / "ingest.log",
            )
            progress.advance(task)
    return httpx.get(f"{services.dmu_url}/runs").json()


def runs_table(runs: list[dict]) -> Table:
    """Per-stage counts of each ingestion run (GET /runs), one row per source."""
    table = Table(
        "source",
        "read",
        "other language",
        "quality rules",
        "exact dup",
        "near dup",
        "kept",
        "tokens",
        title="DMU ingest: documents per stage",
    )
    for run in sorted(runs, key=lambda r: r["id"]):
        c = run["counts"]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(c.get("languages_dropped", {}).items()))
        quality = sum(c.get("filtered", {}).values())
        table.add_row(
            run["source"],
            f"{c['read']:,}",
            f"{c.get('language', 0)} ({dropped})" if dropped else "0",
            str(quality),
            str(c.get("exact_dup", 0)),
            str(c.get("near_dup", 0)),
            f"{c['kept']:,}",
            f"{c['tokens']:,}",
        )
    return table


def near_duplicates(services: Services, runs: list[dict], raw: RawCorpus) -> list[tuple[str, str, str, float]]:
    """Every near duplicate of every run, with the text it duplicates (the exclusion log names both)."""
    text_of = {}  # "run:file:record" -> text; records are the lines of the raw JSONL
    for run in runs:
        for file_index, path in enumerate(run["inputs"]):
            source = Path(path).stem
            for record, doc in enumerate(raw.docs.get(source, [])):
                text_of[f"{run['id']}:{file_index}:{record}"] = doc.text
    found = []
    for run in runs:
        after = None
        while True:
            page = httpx.get(
                f"{services.dmu_url}/runs/{run['id']}/exclusions", params={"rule": "near_dup", **({"after": after} if after else {})}
            ).json()
            for item in page["items"]:
                if item["duplicate_of"] in text_of and item["document"] in text_of:
                    found.append((text_of[item["document"]], text_of[item["duplicate_of"]], run["source"], item["value"] or 0.0))
            after = page["next_after"]
            if after is None:
                break
    return found


def examples(near: list[tuple[str, str, str, float]]) -> list[tuple[str, str, str, float]]:
    """The least similar near duplicate of an English source and of a Chinese one: what exact dedup misses."""
    picked = []
    for suffix in ("-en", "-zh"):
        found = sorted((n for n in near if n[2].endswith(suffix)), key=lambda n: n[3])
        picked += found[:1]
    return picked


def print_near_duplicates(near: list[tuple[str, str, str, float]], console: Console) -> None:
    if not near:
        console.print("near duplicates: none found")
        return
    console.print(f"near duplicates the DMU dropped: {len(near)}; two of them, the dropped one left, the kept one right:")
    for duplicate, kept, source, similarity in examples(near):
        table = Table(f"dropped ({source})", "kept", title=f"estimated Jaccard similarity {similarity:.2f}", expand=True)
        table.add_row(duplicate[:600], kept[:600])
        console.print(table)
