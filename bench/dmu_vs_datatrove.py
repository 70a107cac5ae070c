"""The DMU side by side with datatrove (PyPI ``datatrove==0.10.1``) on the same real-text documents.

datatrove runs as its FineWeb pipeline does: GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter with their defaults, then its MinHash dedup in its four
stages (signatures -> buckets -> clusters -> filter; MinhashConfig defaults: 5-grams, 14 x 8)
writing to a temporary folder, as it does on a cluster. Not used: its fastText language filter
(the model cannot be downloaded here). Its xxhash call is given bytes (xxhash 4 here; datatrove
was written for xxhash < 4, which took str). Its English word tokenizer is spaCy's, which is not
installed: both languages get a regex tokenizer (words; each CJK character a token, as a
character-level stand-in for jieba), which is faster than spaCy, so datatrove's docs/s are if
anything flattering.

Three figures, on bench/dmu_eval_set.py's set:
* documents kept per language (good kept, junk removed; other languages: datatrove has no
  language filter here, ours drops them),
* near-dup precision / recall / F1 on the dedup stream (good documents + variants, rules off),
* docs per CPU second of rules + dedup.

    .venv/bin/python bench/dmu_vs_datatrove.py      (datatrove is in the dev extra, pinned 0.10.1)
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.dedup.minhash import (  # noqa: E402
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.word_tokenizers import WhitespaceTokenizer  # noqa: E402

from bench.dmu_dedup import scores  # noqa: E402
from dmu_service.pipeline.config import DedupConfig, PipelineConfig  # noqa: E402
from dmu_service.pipeline.dedup import Deduplicator  # noqa: E402
from dmu_service.pipeline.normalize import normalize  # noqa: E402
from dmu_service.pipeline.process import DocumentProcessor  # noqa: E402
from dmu_service.pipeline.readers import Record  # noqa: E402
from hack import dmu_eval  # noqa: E402

_TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]+|[^\w\s]"
)


class RegexWordTokenizer(WhitespaceTokenizer):
    """datatrove's fallback tokenizer (its sentence regex), with regex words instead of spaCy's."""

    def word_tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text)


def datatrove_filters(tokenizer) -> list:
    return [
        GopherRepetitionFilter(language=tokenizer),
        GopherQualityFilter(language=tokenizer),
        C4QualityFilter(language=tokenizer),
        FineWebQualityFilter(language=tokenizer),
    ]


def run_datatrove_filters(docs: list[dmu_eval.EvalDoc], tokenizer) -> tuple[list[bool], float]:
    filters = datatrove_filters(tokenizer)
    kept = []
    start = time.process_time()
    for i, d in enumerate(docs):
        doc = Document(text=d.text, id=str(i))
        ok = True
        for f in filters:
            result = f.filter(doc)
            if not (result[0] if isinstance(result, tuple) else result):
                ok = False
                break
        kept.append(ok)
    return kept, time.process_time() - start


def _xxhash_for_str() -> None:
    """datatrove 0.10 hashes ``str`` with xxhash < 4, which took str; xxhash 4 (in this venv) wants bytes."""
    import xxhash
    from datatrove.utils.hashes import xxhash as datatrove_xxhash

    datatrove_xxhash.xxhash64 = lambda text: xxhash.xxh64_intdigest(text.encode("utf-8"))
    datatrove_xxhash.xxhash32 = lambda text: xxhash.xxh32_intdigest(text.encode("utf-8"))


def run_datatrove_minhash(texts: list[str], tokenizer) -> tuple[list[bool], float]:
    """Its four MinHash stages in this process; returns (removed flags in stream order, CPU seconds)."""
    _xxhash_for_str()
    config = MinhashConfig()
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    start = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        sigs, buckets, remove = f"{tmp}/sigs", f"{tmp}/buckets", f"{tmp}/remove"
        for _ in MinhashDedupSignature(output_folder=sigs, config=config, language=tokenizer).run(iter(docs), rank=0, world_size=1) or ():
            pass
        for bucket in range(config.num_buckets):
            for _ in (
                MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config).run(
                    None, rank=bucket, world_size=config.num_buckets
                )
                or ()
            ):
                pass
        for _ in MinhashDedupCluster(input_folder=buckets, output_folder=remove, config=config).run(None) or ():
            pass
        survivors = {d.id for d in MinhashDedupFilter(input_folder=remove).run(iter(docs), rank=0, world_size=1)}
    return [str(i) not in survivors for i in range(len(texts))], time.process_time() - start


def run_ours_rules(docs: list[dmu_eval.EvalDoc]) -> tuple[list[bool], float]:
    processor = DocumentProcessor(PipelineConfig.for_source("mixed"))
    start = time.process_time()
    processed = []
    for i in range(0, len(docs), 2048):
        processed += processor.process([Record(j, d.text) for j, d in enumerate(docs[i : i + 2048], start=i)])
    return [p.outcome == "ok" for p in processed], time.process_time() - start


def run_ours_dedup(texts: list[str]) -> tuple[list[bool], float]:
    dedup = Deduplicator(DedupConfig(exact=False))
    start = time.process_time()
    flags = []
    for i in range(0, len(texts), 2048):
        flags += [v == "near_dup" for v in dedup.decide(texts[i : i + 2048]).verdict]
    return flags, time.process_time() - start


def kept_table(name: str, docs: list[dmu_eval.EvalDoc], kept: list[bool]) -> None:
    cells = []
    for language in ("en", "zh"):
        good = [k for d, k in zip(docs, kept, strict=True) if d.label == "good" and d.language == language]
        junk = [k for d, k in zip(docs, kept, strict=True) if d.label == "junk" and d.language == language]
        cells.append(f"{language}: good kept {sum(good) / len(good):6.1%}  junk removed {1 - sum(junk) / len(junk):6.1%}")
    other = [k for d, k in zip(docs, kept, strict=True) if d.label == "other"]
    print(f"{name:<12}{'   '.join(cells)}   other languages removed {1 - sum(other) / len(other):6.1%}")


def main() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    from loguru import logger

    logger.remove()  # datatrove logs every step at INFO
    eval_set = dmu_eval.load_or_build()
    tokenizer = RegexWordTokenizer()
    docs = eval_set.quality_set()
    print(f"quality set: {dmu_eval.summary(docs)}")
    ours_kept, ours_rules_s = run_ours_rules(docs)
    dt_kept, dt_rules_s = run_datatrove_filters(docs, tokenizer)
    print("\n-- documents kept (rules; ours also runs language id)")
    kept_table("ours", docs, ours_kept)
    kept_table("datatrove", docs, dt_kept)

    stream, labels = eval_set.dedup_stream()
    texts = [normalize(d.text) for d in stream]
    ours_flags, ours_dedup_s = run_ours_dedup(texts)
    dt_flags, dt_dedup_s = run_datatrove_minhash(texts, tokenizer)
    print(f"\n-- near dup on {len(texts)} documents ({sum(labels)} positives)")
    print(f"{'':<12}{'P':>7}{'R':>7}{'F1':>7}   recall en 2/5/10/15 %    recall zh 2/5/10/15 %")
    from bench.dmu_dedup import recall_by_rate

    for name, flags in (("ours", ours_flags), ("datatrove", dt_flags)):
        p, r, f1 = scores(flags, labels)
        print(
            f"{name:<12}{p:>7.3f}{r:>7.3f}{f1:>7.3f}   {' '.join(recall_by_rate(stream, flags, labels, 'en')):<25}"
            f"{' '.join(recall_by_rate(stream, flags, labels, 'zh'))}"
        )

    print("\n-- docs per CPU second")
    print(f"{'':<12}{'rules':>10}{'dedup':>10}{'rules+dedup':>13}")
    for name, rules_s, dedup_s in (("ours", ours_rules_s, ours_dedup_s), ("datatrove", dt_rules_s, dt_dedup_s)):
        print(
            f"{name:<12}{len(docs) / rules_s:>10.0f}{len(texts) / dedup_s:>10.0f}{1 / (rules_s / len(docs) + dedup_s / len(texts)):>13.0f}"
        )
    print(
        f"ratio ours / datatrove: rules {dt_rules_s / len(docs) / (ours_rules_s / len(docs)):.1f}x, dedup {dt_dedup_s / ours_dedup_s:.1f}x"
    )


if __name__ == "__main__":
    main()
