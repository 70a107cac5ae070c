"""What the demo shows: the summary it prints, the PNG (matplotlib) and the HTML page in the work folder."""

from __future__ import annotations

import html
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from heurimentor.demo.corpus import JUNK, SOURCES
from heurimentor.demo.ingest import examples

NAMES = [s.name for s in (*SOURCES, JUNK)]
COLOURS = {
    "man-en": "#1f77b4",
    "fortunes-en": "#6baed6",
    "edu-en": "#9ecae1",
    "man-zh": "#d62728",
    "fortunes-zh": "#fc9272",
    "edu-zh": "#fcbba1",
}
COLOURS[JUNK.name] = "#7f7f7f"


def weights_by_step(result) -> tuple[list[int], dict[str, list[float]]]:
    """The normalised weight of each source at every step, from the version each step trained on."""
    by_version = {v["version"]: v["weights"] for v in result.versions}
    steps = sorted(result.steps)
    shares: dict[str, list[float]] = {n: [] for n in NAMES}
    for step in steps:
        weights = by_version.get(result.steps[step], {})
        total = sum(weights.values()) or 1.0
        for name in NAMES:
            shares[name].append(weights.get(name, 0.0) / total)
    return steps, shares


def junk_weights(result) -> dict:
    """The junk source's share as the careless user set it, and after the TSM's updates that came
    before the person's change (the person's PUT starts from whatever the TSM had left)."""
    if not result.changes:
        return {"added": None, "after_tsm": None, "tsm_versions": 0}
    added = result.changes[0]
    until = result.changes[1].version if len(result.changes) > 1 else float("inf")
    later = [v for v in result.versions if added.version < v["version"] < until and v["author"] == "tsm"]
    share = None
    if later:
        share = later[-1]["weights"].get(JUNK.name, 0.0) / sum(later[-1]["weights"].values())
    return {
        "added": added.weights[JUNK.name] / sum(added.weights.values()),
        "after_tsm": share,
        "tsm_versions": len(later),
    }


def junk_updates(result) -> list[dict]:
    """The TSM's mixture updates from the junk's version until the person's change."""
    if not result.changes:
        return []
    start = result.changes[0].version
    until = result.changes[1].version if len(result.changes) > 1 else float("inf")
    return [e for e in result.events if e["kind"] == "mixture_update" and start <= e["evidence"].get("from_version", 0) < until]


def loss_rows(result) -> list[tuple[str, float | None, float | None]]:
    checks = result.checks
    return [(n, checks["final_val"].get(n), checks["unigram"].get(n)) for n in NAMES]


def print_summary(result, console: Console) -> None:
    checks = result.checks
    table = Table("source", "val loss at the end", "unigram baseline", "below by", title="validation loss (nats/token, held-out samples)")
    for name, val, unigram in loss_rows(result):
        below = f"{unigram - val:.2f}" if val is not None and unigram is not None else "-"
        table.add_row(name + (" (junk)" if name == JUNK.name else ""), f"{val:.2f}" if val is not None else "-", f"{unigram:.2f}", below)
    console.print(table)

    history = Table("version", "author", "from step", "weights (shares)", "reason", title="mixture history (DMU)")
    first = {}
    for step, version in sorted(result.steps.items()):
        first.setdefault(version, step)
    for v in result.versions:
        total = sum(v["weights"].values())
        shares = " ".join(f"{n}={w / total:.2f}" for n, w in v["weights"].items() if w > 0)
        history.add_row(str(v["version"]), v["author"], str(first.get(v["version"], "-")), shares, v["reason"][:90])
    console.print(history)
    kinds: dict[str, int] = {}
    for event in result.events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    console.print("TSM events: " + (", ".join(f"{n} {k}" for k, n in kinds.items()) or "none") + " (all of them in index.html)")
    for event in result.events:
        if event["kind"] != "mixture_update":
            console.print(f"  step {event['step']}: [bold]{event['kind']}[/bold] {event['message'][:200]}")
    junk = junk_weights(result)
    noticed = Table(
        "step", f"{JUNK.name} share", f"{JUNK.name} loss", "real sources' loss (mean)", title="what the TSM saw and did after the junk came"
    )
    for event in junk_updates(result):
        evidence = event["evidence"]
        losses = evidence.get("losses", {})
        real = [v for k, v in losses.items() if k != JUNK.name]
        noticed.add_row(
            str(event["step"]),
            f"{evidence['previous'].get(JUNK.name, 0):.3f} -> {evidence['weights'].get(JUNK.name, 0):.3f}",
            f"{losses[JUNK.name]:.2f}" if JUNK.name in losses else "-",
            f"{sum(real) / len(real):.2f}" if real else "-",
        )
    console.print(noticed)
    if junk["added"] is not None:
        after = f"{junk['after_tsm']:.3f}" if junk["after_tsm"] is not None else "unchanged (no TSM version in between)"
        console.print(
            f"[bold]junk source {JUNK.name}: share {junk['added']:.3f} when added, {after} after {junk['tsm_versions']} TSM update(s)[/bold]"
        )
    for change in result.changes:
        newer = f" (as v{change.adopted_version}: the TSM had written on top of it)" if change.adopted_version != change.version else ""
        console.print(
            f"{change.who}'s v{change.version}: PUT while step {change.step_in_progress} ran; trained on from step {change.adopted_at_step}{newer}"
        )
    int4 = Table(
        "language",
        "perplexity fp32",
        "perplexity int4",
        "retained",
        title=f"int4 GPTQ, {checks['int4']['bits_per_weight']:.2f} bits/weight",
    )
    for lang in checks["perplexity_fp32"]:
        int4.add_row(
            lang,
            f"{checks['perplexity_fp32'][lang]:.2f}",
            f"{checks['perplexity_int4'][lang]:.2f}",
            f"{100 * checks['retained'][lang]:.2f} %",
        )
    console.print(int4)
    console.print(f"transformers LlamaForCausalLM reload of the export: max |logit difference| {checks['hf_max_logit_difference']:.2e}")
    for lang, (prompt, text) in checks["generations"].items():
        console.print(f"greedy ({lang}): [bold]{prompt}[/bold]{text!r}")


def write_pictures(result, work: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.sans-serif"] = ["DejaVu Sans"]
    fig = plt.figure(figsize=(11, 9), dpi=80)
    grid = fig.add_gridspec(3, 1, height_ratios=[3, 2.2, 1.4], hspace=0.45)

    ax = fig.add_subplot(grid[0])
    loss = result.curves.get("loss", [])
    ax.plot([s for s, _ in loss], [v for _, v in loss], color="black", lw=1, alpha=0.5, label="training loss (batch)")
    for name in NAMES:
        points = result.curves.get(f"val/{name}", [])
        colour = COLOURS[name]
        label = f"val {name}" + (" (junk)" if name == JUNK.name else "")
        ax.plot([s for s, _ in points], [v for _, v in points], color=colour, lw=2, label=label)
        unigram = result.checks["unigram"].get(name)
        if unigram is not None:
            ax.axhline(unigram, color=colour, lw=1, ls=":")
    ax.set_ylabel("nats / token")
    ax.set_title("loss over steps (dotted: each source's unigram baseline)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    ax = fig.add_subplot(grid[1], sharex=ax)
    steps, shares = weights_by_step(result)
    if steps:
        ax.stackplot(steps, [shares[n] for n in NAMES], labels=NAMES, colors=[COLOURS[n] for n in NAMES], step="post")
    first = {}
    for step, version in sorted(result.steps.items()):
        first.setdefault(version, step)
    authors = {v["version"]: v["author"] for v in result.versions}
    tsm_steps = [step for version, step in first.items() if authors.get(version) == "tsm"]
    ax.plot(tsm_steps, [1.02] * len(tsm_steps), "v", color="black", ms=4, clip_on=False, label="TSM policy update (new version)")
    for change in result.changes:  # the REST changes, at the step boundary after the PUT
        ax.axvline(change.step_in_progress + 0.5, color="black", lw=1.5)
        ax.text(change.step_in_progress + 1, 1.06, f"v{change.version} {change.who} (PUT, If-Match)", fontsize=7, va="bottom")
    for event in result.events:
        if event["kind"] != "mixture_update":
            ax.axvline(event["step"], color="black", ls="--", lw=0.8)
            ax.text(event["step"], 0.5, event["kind"], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mixture share")
    ax.set_xlabel("step")
    ax.legend(ncol=4, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    ax = fig.add_subplot(grid[2])
    runs = result.runs
    kept = [r["counts"].get("kept", 0) for r in runs]
    dup = [r["counts"].get("exact_dup", 0) + r["counts"].get("near_dup", 0) for r in runs]
    filtered = [r["counts"].get("read", 0) - k - d for r, k, d in zip(runs, kept, dup)]
    labels = [r["source"] for r in runs]
    ax.barh(labels, kept, color="#2ca02c", label="kept")
    ax.barh(labels, dup, left=kept, color="#ff7f0e", label="duplicates")
    ax.barh(labels, filtered, left=[k + d for k, d in zip(kept, dup)], color="#bbbbbb", label="filtered (language, quality, problems)")
    ax.set_xlabel("documents (DMU ingest)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(axis="y", labelsize=7)

    png = work / "demo.png"
    fig.savefig(png, bbox_inches="tight")
    plt.close(fig)
    return png, work / "index.html"


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_page(result, page: Path, png: Path) -> None:
    checks = result.checks
    tokenizer = result.tokenizer
    junk = junk_weights(result)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>HeuriMentor demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}pre{white-space:pre-wrap;font-size:12px}</style>",
        "<h1>HeuriMentor demo</h1>",
        f"<p>{result.config.steps} steps, {result.config.workers} torchrun workers, TSM policy {html.escape(result.config.policy)}; "
        f"{result.seconds.get('total', 0):.0f} s in all.</p>",
        f"<img src='{png.name}' width='100%'>",
        "<h2>Tokenizer</h2>",
        _table(
            ["vocabulary", "chars/token EN", "chars/token ZH"],
            [[tokenizer["vocab_size"], f"{tokenizer['chars_per_token']['en']:.2f}", f"{tokenizer['chars_per_token']['zh']:.2f}"]],
        ),
        "<h2>DMU ingest</h2>",
        _table(
            ["source", "MB", "read", "kept", "exact dup", "near dup", "tokens", "filtered by"],
            [
                [
                    r["source"],
                    f"{result.raw_bytes.get(r['source'], 0) / 1e6:.2f}",
                    r["counts"].get("read"),
                    r["counts"].get("kept"),
                    r["counts"].get("exact_dup"),
                    r["counts"].get("near_dup"),
                    r["counts"].get("tokens"),
                    json.dumps(r["counts"].get("filtered", {})),
                ]
                for r in result.runs
            ],
        ),
    ]
    for duplicate, kept, source, similarity in examples(result.near_duplicates):
        parts.append(f"<h3>near duplicate in {html.escape(source)} (similarity {similarity:.2f})</h3>")
        parts.append(
            _table(["dropped", "kept"], [[duplicate[:1500], kept[:1500]]]).replace("<td>", "<td><pre>").replace("</td>", "</pre></td>")
        )
    parts += [
        "<h2>Validation loss vs the unigram baseline</h2>",
        _table(
            ["source", "val loss", "unigram", "below by"],
            [[n, f"{v:.3f}", f"{u:.3f}", f"{u - v:.3f}"] for n, v, u in loss_rows(result) if v is not None],
        ),
        "<h2>Mixture history</h2>",
        _table(
            ["version", "author", "weights", "reason"],
            [
                [v["version"], v["author"], json.dumps({k: round(w, 3) for k, w in v["weights"].items()}), v["reason"]]
                for v in result.versions
            ],
        ),
        "<h2>REST changes while training</h2>",
        _table(
            ["who", "version", "PUT while step", "trained on from step", "as version", "412 retries"],
            [[c.who, c.version, c.step_in_progress, c.adopted_at_step, c.adopted_version, c.retries] for c in result.changes],
        ),
        f"<p>junk source {html.escape(JUNK.name)}: share {junk['added']:.3f} when added, "
        f"{junk['after_tsm'] if junk['after_tsm'] is None else round(junk['after_tsm'], 3)} after {junk['tsm_versions']} TSM update(s).</p>",
        "<h2>TSM events</h2>",
        _table(["step", "kind", "severity", "message"], [[e["step"], e["kind"], e["severity"], e["message"]] for e in result.events]),
        "<h2>int4 quantization (GPTQ)</h2>",
        _table(
            ["language", "perplexity fp32", "perplexity int4", "retained"],
            [
                [
                    lang,
                    f"{checks['perplexity_fp32'][lang]:.3f}",
                    f"{checks['perplexity_int4'][lang]:.3f}",
                    f"{100 * checks['retained'][lang]:.2f} %",
                ]
                for lang in checks["perplexity_fp32"]
            ],
        ),
        "<h2>Hugging Face export, loaded by transformers</h2>",
        f"<p>max |logit difference| against the trainer's model: {checks['hf_max_logit_difference']:.2e}</p>",
        _table(["language", "prompt", "greedy continuation"], [[lang, p, t] for lang, (p, t) in checks["generations"].items()]),
        "<h2>Time</h2>",
        _table(["phase", "seconds"], [[k, f"{v:.0f}"] for k, v in result.seconds.items()]),
    ]
    page.write_text("\n".join(parts), encoding="utf-8")
    summary = {
        "tokenizer": tokenizer,
        "ingest": {r["source"]: {k: v for k, v in r["counts"].items() if k != "samples"} for r in result.runs},
        "near_duplicates": len(result.near_duplicates),
        "val_loss_vs_unigram": {n: {"val": v, "unigram": u} for n, v, u in loss_rows(result)},
        "junk": junk,
        "changes": [vars(c) for c in result.changes],
        "checks": {k: v for k, v in checks.items() if k != "generations"},
        "generations": checks["generations"],
        "seconds": result.seconds,
    }
    (page.parent / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
