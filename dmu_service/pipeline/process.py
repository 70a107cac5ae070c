"""The per-document stages (pure, picklable: the local and the Ray backend both run this).

normalize -> empty check -> language id -> language-specific quality rules. Dedup and tokenization
need the whole stream in order, so they run in the runner, not here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dmu_service.pipeline import langid
from dmu_service.pipeline.config import PipelineConfig
from dmu_service.pipeline.normalize import normalize_batch
from dmu_service.pipeline.quality import Failure, chinese_rules_batch, english_rules_batch
from dmu_service.pipeline.readers import Record


@dataclass
class Processed:
    index: int
    text: str | None  # None when dropped
    outcome: str  # "ok", a reader problem, "empty", "language", or a rule name
    language: str = "und"
    line_counts: Counter = field(default_factory=Counter)
    value: float | None = None  # what tripped the rule (the exclusion log keeps it)

    def to_tuple(self) -> tuple:
        return self.index, self.text, self.outcome, self.language, dict(self.line_counts), self.value

    @classmethod
    def from_tuple(cls, t) -> Processed:
        return cls(t[0], t[1], t[2], t[3], Counter(t[4]), t[5])


class DocumentProcessor:
    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg

    def process(self, records: list[Record]) -> list[Processed]:
        cfg = self.cfg
        out: list[Processed] = []
        pending: list[Processed] = []
        readable = [r for r in records if r.problem is None]
        normalized = iter(
            normalize_batch(
                [r.text for r in readable], form=cfg.normalize.form, traditional_to_simplified=cfg.normalize.traditional_to_simplified
            )
        )
        for record in records:
            if record.problem is not None:
                out.append(Processed(record.index, None, record.problem))
                continue
            text = next(normalized)
            if len(text) < max(cfg.limits.min_doc_chars, 1):
                out.append(Processed(record.index, None, "empty"))
                continue
            item = Processed(record.index, text, "ok")
            out.append(item)
            pending.append(item)
        if cfg.langid.enabled and pending:
            detected = langid.detect_batch([p.text for p in pending], sample_chars=cfg.langid.sample_chars, fast_path=cfg.langid.fast_path)
            for item, (language, confidence) in zip(pending, detected, strict=True):
                item.language = language
                if language not in cfg.langid.languages or confidence < cfg.langid.min_confidence:
                    item.outcome, item.text, item.value = "language", None, round(confidence, 4)
        english_on = any((cfg.english.gopher_quality, cfg.english.gopher_repetition, cfg.english.c4, cfg.english.fineweb))
        english: list[Processed] = []
        chinese: list[Processed] = []
        for item in pending:
            if item.text is None:
                continue
            is_chinese = item.language == "zh" if cfg.langid.enabled else langid.cjk_share(item.text[:2000]) >= 0.1
            if is_chinese and cfg.chinese.enabled:
                chinese.append(item)
            elif not is_chinese and english_on:
                english.append(item)
        # Each language's rules run over the batch at once (their n-gram statistics are vectorised across documents).
        for items, rules, rules_cfg in ((english, english_rules_batch, cfg.english), (chinese, chinese_rules_batch, cfg.chinese)):
            for item, result in zip(items, rules([i.text for i in items], rules_cfg, [i.line_counts for i in items]), strict=True):
                self._apply(item, *result)
        return out

    @staticmethod
    def _apply(item: Processed, text: str, failed: Failure | None) -> None:
        if failed:
            item.text, item.outcome, item.value = None, failed.rule, round(float(failed.value), 4)
        else:
            item.text = text
