"""Every decision of the DMU's stages on the evaluation set, for comparing two versions of the code.

Writes one JSON document: per configuration (source ``mixed``, ``en``, ``zh``, ``mixed`` without the
language fast path, without language id, and the previous defaults of bench/dmu_quality.py, which
turn C4's line rules on), every document of the quality set and the variants (its outcome, the
value that tripped the rule, its language, the removed-line counts and the sha256 of its cleaned
text); and per shingle kind (auto, word, char) every dedup verdict of the dedup stream with its
``duplicate_of`` and similarity, plus the sha256 of the signatures and band keys. Two runs (the
working tree, and ``--code DIR`` for another checkout's ``dmu_service``) compare with ``cmp``/``diff``:

    .venv/bin/python bench/dmu_decisions.py --out new.json
    .venv/bin/python bench/dmu_decisions.py --code /tmp/old-checkout --out old.json
    .venv/bin/python bench/dmu_decisions.py --compare old.json new.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--code" in sys.argv:  # import dmu_service from another checkout
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])

CONFIGS = {
    "mixed": ("mixed", {}),
    "en": ("en", {}),
    "zh": ("zh", {}),
    "mixed-no-fast-path": ("mixed", {"langid": {"fast_path": False}}),
    "mixed-no-langid": ("mixed", {"langid": {"enabled": False}}),
    "previous-defaults": ("mixed", None),  # bench/dmu_quality.py's PREVIOUS_DEFAULTS
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def snapshot() -> dict:
    import numpy as np

    from dmu_service.pipeline.config import DedupConfig, PipelineConfig
    from dmu_service.pipeline.dedup import Deduplicator
    from dmu_service.pipeline.normalize import normalize
    from dmu_service.pipeline.process import DocumentProcessor
    from dmu_service.pipeline.readers import Record
    from hack import dmu_eval

    sys.path.insert(0, str(ROOT / "bench"))
    from dmu_quality import PREVIOUS_DEFAULTS

    eval_set = dmu_eval.load_or_build()
    docs = eval_set.quality_set() + eval_set.variants
    out: dict = {"stages": {}, "dedup": {}}
    for name, (language, overrides) in CONFIGS.items():
        cfg = PipelineConfig.for_source(language, PREVIOUS_DEFAULTS if overrides is None else overrides)
        processor = DocumentProcessor(cfg)
        rows = []
        for i in range(0, len(docs), cfg.batch_docs):
            for item in processor.process([Record(j, d.text) for j, d in enumerate(docs[i : i + cfg.batch_docs], start=i)]):
                text_sha = _sha(item.text.encode("utf-8", "surrogatepass")) if item.text is not None else None
                rows.append([item.outcome, item.value, item.language, dict(sorted(item.line_counts.items())), text_sha])
        out["stages"][name] = rows
    stream, _ = eval_set.dedup_stream()
    texts = [normalize(d.text) for d in stream]
    for kind in ("auto", "word", "char"):
        cfg = DedupConfig(shingle=kind)
        dedup = Deduplicator(cfg)
        verdicts, signatures, bands = [], [], []
        for i in range(0, len(texts), 2048):
            batch = texts[i : i + 2048]
            decision = dedup.decide(batch, [(0, 0, j) for j in range(i, i + len(batch))])
            verdicts += [[v, list(d) if d else None, s] for v, d, s in zip(decision.verdict, decision.duplicate_of, decision.similarity)]
            sig = dedup.minhasher.signatures(batch)
            signatures.append(sig.values)
            bands.append(dedup.minhasher.band_keys(sig.values))
        out["dedup"][kind] = {
            "verdicts": verdicts,
            "signatures": _sha(np.concatenate(signatures).tobytes()),
            "band_keys": _sha(np.concatenate(bands).tobytes()),
        }
    return out


def compare(old_path: Path, new_path: Path) -> int:
    old, new = json.loads(old_path.read_text()), json.loads(new_path.read_text())
    differences = 0
    for name in old["stages"]:
        a, b = old["stages"][name], new["stages"].get(name, [])
        diff = [i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i]]
        differences += len(diff)
        print(f"stages {name}: {len(a)} documents, {len(diff)} differ" + (f" (first: {diff[:5]})" if diff else ""))
        for i in diff[:5]:
            print(f"  {i}: {a[i] if i < len(a) else None} -> {b[i] if i < len(b) else None}")
    for kind in old["dedup"]:
        a, b = old["dedup"][kind], new["dedup"].get(kind, {})
        diff = [i for i, (x, y) in enumerate(zip(a["verdicts"], b.get("verdicts", []))) if x != y]
        same_hashes = a["signatures"] == b.get("signatures") and a["band_keys"] == b.get("band_keys")
        differences += len(diff) + (not same_hashes) + (len(a["verdicts"]) != len(b.get("verdicts", [])))
        print(
            f"dedup {kind}: {len(a['verdicts'])} documents, {len(diff)} verdicts differ, signatures and band keys {'equal' if same_hashes else 'DIFFER'}"
        )
    print("identical" if differences == 0 else f"{differences} differences")
    return 1 if differences else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--code", type=Path, help="a checkout whose dmu_service to import")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    result = json.dumps(snapshot())
    if args.out:
        args.out.write_text(result)
    else:
        print(result)


if __name__ == "__main__":
    main()
