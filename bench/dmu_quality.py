"""What each quality rule removes of good documents and of junk, per language, on real text.

Runs the DMU's per-document stages (normalize, language id, quality rules) with a source's
default pipeline for language ``mixed`` (EN + ZH) over the evaluation set of bench/dmu_eval_set.py
(good documents of real corpora, generated junk and real index pages, other-language man pages),
and prints, per language: the share of good documents kept, the share of junk removed, the
share of other-language documents removed, and per rule the documents it removed of each.
``--baseline`` runs the previous defaults (every Gopher/C4/FineWeb rule on, as datatrove's FineWeb
pipeline, and lingua on every document) in the same process for the ratio.

    .venv/bin/python bench/dmu_quality.py [--baseline] [--only-rule RULE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmu_service.pipeline.config import PipelineConfig  # noqa: E402
from dmu_service.pipeline.process import DocumentProcessor  # noqa: E402
from dmu_service.pipeline.readers import Record  # noqa: E402
from hack import dmu_eval  # noqa: E402

# The defaults before issue 12: every English rule on, C4's line rules included, lingua on every document.
PREVIOUS_DEFAULTS = {
    "english": {
        "min_words": 50,
        "min_alpha_words": 0.8,
        "ngram_limit_scale": 1.0,
        "c4_curly_bracket": True,
        "c4_line_rules": True,
        "c4_min_sentences": 5,
        "min_line_punct_ratio": 0.12,
        "max_short_line_ratio": 0.67,
        "max_dup_line_char_ratio": 0.01,
        "max_newline_word_ratio": 0.3,
        "max_menu_line_ratio": 1.0,
    },
    "chinese": {
        "min_cjk_ratio": 0.3,
        "max_char_ngram_dup_ratio": 0.25,
        "max_dup_line_frac": 0.3,
        "min_function_char_ratio": 0.0,
        "max_menu_line_ratio": 1.0,
        "max_short_line_ratio": 1.0,
    },
    "langid": {"fast_path": False},
}


def evaluate(docs: list[dmu_eval.EvalDoc], cfg: PipelineConfig) -> tuple[dict, float]:
    processor = DocumentProcessor(cfg)
    records = [Record(i, d.text) for i, d in enumerate(docs)]
    start = time.process_time()
    processed = []
    for i in range(0, len(records), cfg.batch_docs):
        processed += processor.process(records[i : i + cfg.batch_docs])
    seconds = time.process_time() - start  # CPU time: the machine is shared, wall time says little
    table: dict = {}
    for doc, item in zip(docs, processed, strict=True):
        group = doc.language if doc.label != "other" else "other"
        row = table.setdefault((group, doc.label), Counter())
        row["total"] += 1
        row[item.outcome] += 1
    return table, seconds


def report(name: str, table: dict, seconds: float, n_docs: int) -> None:
    print(f"\n== {name}: {n_docs} documents in {seconds:.1f} CPU s ({n_docs / seconds:,.0f} docs per CPU second)")
    rules = sorted({k for row in table.values() for k in row if k not in ("total", "ok")})
    for lang in ("en", "zh"):
        good, junk = table.get((lang, "good"), Counter()), table.get((lang, "junk"), Counter())
        print(
            f"{lang}: good kept {good['ok'] / max(good['total'], 1):.1%} of {good['total']}, "
            f"junk removed {1 - junk['ok'] / max(junk['total'], 1):.1%} of {junk['total']}"
        )
    other = table.get(("other", "other"), Counter())
    print(f"other languages removed {1 - other['ok'] / max(other['total'], 1):.1%} of {other['total']}")
    print(f"{'rule':<34}{'good en':>9}{'junk en':>9}{'good zh':>9}{'junk zh':>9}{'other':>7}")
    for rule in rules:
        cells = [
            table.get(key, Counter())[rule] for key in (("en", "good"), ("en", "junk"), ("zh", "good"), ("zh", "junk"), ("other", "other"))
        ]
        print(f"{rule:<34}" + "".join(f"{c:>9}" for c in cells[:4]) + f"{cells[4]:>7}")


def junk_by_kind(docs: list[dmu_eval.EvalDoc], cfg: PipelineConfig) -> None:
    junk = [d for d in docs if d.label == "junk"]
    processed = DocumentProcessor(cfg).process([Record(i, d.text) for i, d in enumerate(junk)])
    kinds: dict = {}
    for doc, item in zip(junk, processed, strict=True):
        kinds.setdefault(f"{doc.language}/{doc.kind}", Counter())[item.outcome == "ok"] += 1
    print("junk kept by kind: " + ", ".join(f"{k} {c[True]}/{c[True] + c[False]}" for k, c in sorted(kinds.items()) if c[True]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="store_true", help="also run the previous defaults")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="override a default, e.g. english.min_alpha_words=0.7 (JSON value)",
    )
    args = parser.parse_args()
    overrides: dict = {}
    for item in args.set:
        key, _, value = item.partition("=")
        stage, _, name = key.partition(".")
        overrides.setdefault(stage, {})[name] = json.loads(value)
    eval_set = dmu_eval.load_or_build()
    docs = eval_set.quality_set()
    print("set:", dmu_eval.summary(docs))
    cfg = PipelineConfig.for_source("mixed", overrides)
    table, seconds = evaluate(docs, cfg)
    report("defaults (source language mixed)", table, seconds, len(docs))
    junk_by_kind(docs, cfg)
    if args.baseline:
        table, seconds = evaluate(docs, PipelineConfig.for_source("mixed", PREVIOUS_DEFAULTS))
        report("previous defaults (all Gopher/C4/FineWeb rules, lingua everywhere)", table, seconds, len(docs))


if __name__ == "__main__":
    main()
