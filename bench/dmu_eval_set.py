"""Build (or load from its cache) the DMU's labelled evaluation set on real text and describe it.

The set is defined in ``hack/dmu_eval.py`` (good documents of the Debian corpora that
``hack/install-system-deps.sh`` installs, generated junk and real index pages, other-language man
pages, and near-duplicate variants at 2/5/10/15 % span edits); bench/dmu_quality.py,
bench/dmu_dedup.py and bench/dmu_vs_datatrove.py read it.

    .venv/bin/python bench/dmu_eval_set.py [--out set.jsonl] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hack import dmu_eval  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the set here as JSONL")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    args = parser.parse_args()
    if args.rebuild:
        eval_set = dmu_eval.build()
    else:
        eval_set = dmu_eval.load_or_build()
    print("documents:", json.dumps(dmu_eval.summary(eval_set.quality_set() + eval_set.variants)))
    kinds: dict[str, int] = {}
    for d in eval_set.good + eval_set.junk:
        kinds[f"{d.label}/{d.kind}/{d.language}"] = kinds.get(f"{d.label}/{d.kind}/{d.language}", 0) + 1
    for key, n in sorted(kinds.items()):
        print(f"  {key:<40}{n:>6}")
    for lang in ("en", "zh"):
        sizes = [len(d.text) for d in eval_set.good if d.language == lang]
        print(f"good {lang}: median {statistics.median(sizes):.0f} chars, mean {statistics.mean(sizes):.0f}")
    print(f"{'variants':<10}{'target':>8}{'n':>6}{'measured mean':>15}{'p90':>7}")
    for lang in ("en", "zh"):
        for rate in dmu_eval.EDIT_RATES:
            edited = sorted(d.edited for d in eval_set.variants if d.language == lang and d.edit_rate == rate)
            print(f"{lang:<10}{rate:>8.0%}{len(edited):>6}{statistics.mean(edited):>15.3f}{edited[int(0.9 * len(edited))]:>7.3f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for doc in eval_set.quality_set() + eval_set.variants:
                f.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
