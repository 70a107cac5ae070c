"""Per-source pipeline settings: defaults by the source's language, overridable stage by stage.

Dedup: 112 permutations as datatrove's MinhashConfig, but banded for recall (28 x 4 instead of
14 x 8, whose S-curve knee at (1/14)^(1/8) = 0.72 missed half of the documents with 15 % of their
text edited) and followed by a verification of every candidate on its signature (dedup.py).
The quality thresholds are calibrated on real text (docs/dmu.md has the figures).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsConfig(_Stage):
    max_doc_bytes: int = Field(default=1_000_000, gt=0, description="longer documents are counted and skipped")
    min_doc_chars: int = Field(default=1, ge=0)


class NormalizeConfig(_Stage):
    form: Literal["NFC", "NFKC", "none"] = "NFKC"
    traditional_to_simplified: bool = False


class LangIdConfig(_Stage):
    enabled: bool = True
    languages: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en"])
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    sample_chars: int = Field(default=2000, gt=0)
    # Script counts and English function words decide clear EN/ZH documents; lingua the rest.
    fast_path: bool = True


class EnglishRulesConfig(_Stage):
    """Gopher / C4 / FineWeb (datatrove's rules). Defaults calibrated on real text: docs/dmu.md."""

    gopher_quality: bool = True
    gopher_repetition: bool = True
    c4: bool = True
    fineweb: bool = True
    # Gopher quality
    min_words: int = Field(default=30, ge=0)
    max_words: int = Field(default=100_000, gt=0)
    min_mean_word_length: float = Field(default=3, ge=0)
    max_mean_word_length: float = Field(default=10, gt=0)
    max_symbol_word_ratio: float = Field(default=0.1, ge=0)
    max_bullet_lines: float = Field(default=0.9, ge=0, le=1)
    max_ellipsis_lines: float = Field(default=0.3, ge=0, le=1)
    min_alpha_words: float = Field(default=0.7, ge=0, le=1)
    min_stop_words: int = Field(default=2, ge=0)
    # Gopher repetition (datatrove's n-gram limits are multiplied by ngram_limit_scale)
    max_dup_line_frac: float = Field(default=0.3, ge=0, le=1)
    max_dup_para_frac: float = Field(default=0.3, ge=0, le=1)
    max_dup_line_char_frac: float = Field(default=0.2, ge=0, le=1)
    max_dup_para_char_frac: float = Field(default=0.2, ge=0, le=1)
    ngram_limit_scale: float = Field(default=3.0, gt=0)
    # C4
    c4_lorem_ipsum: bool = True
    c4_curly_bracket: bool = False
    c4_line_rules: bool = False  # drop lines without terminal punctuation, < 3 words, javascript/policy text
    c4_min_sentences: int = Field(default=1, ge=0)  # 0: off
    # FineWeb
    min_line_punct_ratio: float = Field(default=0.0, ge=0, le=1)
    max_short_line_ratio: float = Field(default=0.95, ge=0, le=1)
    max_dup_line_char_ratio: float = Field(default=0.3, ge=0, le=1)
    max_newline_word_ratio: float = Field(default=0.6, ge=0)
    # Ours: navigation menus, breadcrumbs, link lists (lines with >= 2 " | " / " > " / " · " separators)
    max_menu_line_ratio: float = Field(default=0.25, ge=0, le=1)


class ChineseRulesConfig(_Stage):
    enabled: bool = True
    min_chars: int = 50
    min_cjk_ratio: float = Field(default=0.1, ge=0, le=1, description="CJK ideographs / letters")
    max_char_ngram_dup_ratio: float = Field(default=0.75, ge=0, le=1)
    char_ngram: int = Field(default=10, ge=2, le=12)  # an n-gram's hash has 12 multipliers (minhash.NGRAM_MULTIPLIERS)
    max_dup_line_frac: float = Field(default=0.6, ge=0, le=1)
    min_function_char_ratio: float = Field(default=0.03, ge=0, le=1, description="的/了/是/之/而… per ideograph")
    max_menu_line_ratio: float = Field(default=0.25, ge=0, le=1)
    max_short_line_ratio: float = Field(default=0.65, ge=0, le=1, description="lines under 10 characters")
    strip_ad_lines: bool = True


class DedupConfig(_Stage):
    exact: bool = True
    near: bool = True
    num_perm: int = Field(default=112, gt=0)
    # Candidates: 28 bands x 4 rows reach Jaccard 0.5 pairs with probability 0.84, 0.6 with 0.98.
    bands: int = Field(default=28, gt=0)
    rows: int = Field(default=4, gt=0)
    # Verified: a candidate is a duplicate when its estimated Jaccard similarity reaches this.
    threshold: float = Field(default=0.5, gt=0, le=1)
    ngram: int = Field(default=5, gt=0)
    shingle: Literal["auto", "word", "char"] = "auto"  # auto: CJK characters and other words as units, per document
    seed: int = 1

    @model_validator(mode="after")
    def _bands_times_rows(self) -> DedupConfig:
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"dedup: bands x rows = {self.bands}x{self.rows} must equal num_perm {self.num_perm}")
        return self


class TokenizeConfig(_Stage):
    shard_max_tokens: int = Field(default=1 << 24, gt=0, description="a shard (and a checkpoint) per this many tokens")
    commit_every_docs: int = Field(default=20_000, gt=0, description="checkpoint at least this often")


class PipelineConfig(_Stage):
    text_field: str = "text"
    text_split: Literal["file", "paragraph"] = "paragraph"  # plain-text files: one doc per file or per blank-line block
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    english: EnglishRulesConfig = Field(default_factory=EnglishRulesConfig)
    chinese: ChineseRulesConfig = Field(default_factory=ChineseRulesConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    batch_docs: int = Field(default=2048, gt=0, description="documents per processing batch")

    @classmethod
    def for_source(cls, language: str, overrides: dict | None = None) -> PipelineConfig:
        """Defaults for a source language, then the source's overrides (deep-merged)."""
        defaults: dict = {
            "en": {"langid": {"languages": ["en"]}, "chinese": {"enabled": False}},
            "zh": {"langid": {"languages": ["zh"]}, "english": _english_off()},
            "mixed": {"langid": {"languages": ["en", "zh"]}},
            "code": {
                "langid": {"enabled": False},
                "english": _english_off(),
                "chinese": {"enabled": False},
                "normalize": {"form": "NFC"},
                "text_split": "file",
            },
        }[language]
        return cls.model_validate(_deep_merge(defaults, overrides or {}))


def _english_off() -> dict:
    return {"gopher_quality": False, "gopher_repetition": False, "c4": False, "fineweb": False}


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged
