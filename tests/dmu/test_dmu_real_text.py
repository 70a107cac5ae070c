"""The DMU on real text: the Debian corpora that hack/install-system-deps.sh installs (man pages in
English and Chinese, the Python docs, the Debian Edu manual, fortunes), junk a crawler meets,
near-duplicate variants at 2-15 % span edits (hack/dmu_eval.py), and the exclusion log of a run.

A smaller set than bench/dmu_eval_set.py's (30 files per corpus), so the margins are a little wider
than the benchmark's goals.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dmu_service.db import make_engine, make_session_factory
from dmu_service.models import Source
from dmu_service.pipeline.config import DedupConfig, PipelineConfig
from dmu_service.pipeline.dedup import Deduplicator
from dmu_service.pipeline.langid import cjk_share
from dmu_service.pipeline.markup import html_to_text, roff_to_text
from dmu_service.pipeline.minhash import shingles
from dmu_service.pipeline.normalize import normalize
from dmu_service.pipeline.process import DocumentProcessor
from dmu_service.pipeline.readers import Record, read_records
from dmu_service.pipeline.runner import execute_run, start_run
from hack import dmu_eval
from heurimentor import corpora
from heurimentor.cli import app
from tests.dmu.testlib import TOKEN, auth


@pytest.fixture(scope="module")
def eval_set() -> dmu_eval.EvalSet:
    corpora.require_corpora()  # a clear error naming the packages and the install script
    return dmu_eval.build(per_corpus_files=30, junk_per_kind=12)


def test_man_page_and_html_readers_on_real_files() -> None:
    corpora.require_corpora()
    ls = corpora.MAN / "man1" / "ls.1.gz"
    text = next(read_records(ls, text_field="text", text_split="file", max_doc_bytes=1 << 20)).text
    assert text.startswith("NAME\nls - list directory contents") and "--all\ndo not ignore entries starting with ." in text
    assert "\\f" not in text and ".TP" not in text and ".SH" not in text
    zh_pages = sorted((corpora.MAN / "zh_CN" / "man1").glob("*.gz"))
    zh = roff_to_text(gzip.decompress(zh_pages[0].read_bytes()).decode("utf-8"))
    assert cjk_share(zh) > 0.1 and "\\f" not in zh
    page = corpora.PYTHON_HTML / "library" / "json.html"
    html = html_to_text(page.read_text())
    assert html.startswith("json — JSON encoder and decoder") and ">>> import json" in html
    assert "<div" not in html and "Navigation" not in html[:500] and "sidebar.js" not in html
    record = next(read_records(page, text_field="text", text_split="file", max_doc_bytes=1 << 20))
    assert record.text == html


def test_corpus_cli_writes_real_text_for_ingest(tmp_path: Path) -> None:
    from heurimentor.cli import app

    corpora.require_corpora()
    out = CliRunner().invoke(app, ["corpus", "fortunes-zh", str(tmp_path / "zh.jsonl"), "--documents", "5", "--chars", "600"])
    assert out.exit_code == 0 and "5 documents of fortunes-zh" in out.output, out.output
    texts = [json.loads(line)["text"] for line in (tmp_path / "zh.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = [d.text for _, d in zip(range(5), corpora.documents("fortunes-zh", target_chars=600))]
    assert texts == expected and all(cjk_share(t) > 0.3 for t in texts)
    refused = CliRunner().invoke(app, ["corpus", "fortunes-jp", str(tmp_path / "jp.jsonl")])
    assert refused.exit_code == 2 and "unknown corpus 'fortunes-jp'" in refused.output
    assert not (tmp_path / "jp.jsonl").exists()


def _outcomes(docs: list[dmu_eval.EvalDoc]) -> list[str]:
    processor = DocumentProcessor(PipelineConfig.for_source("mixed"))
    return [p.outcome for p in processor.process([Record(i, d.text) for i, d in enumerate(docs)])]


def test_default_rules_keep_good_text_and_remove_junk(eval_set: dmu_eval.EvalSet) -> None:
    docs = eval_set.quality_set()
    outcomes = _outcomes(docs)
    for language in ("en", "zh"):
        good = [o for d, o in zip(docs, outcomes, strict=True) if d.label == "good" and d.language == language]
        junk = [o for d, o in zip(docs, outcomes, strict=True) if d.label == "junk" and d.language == language]
        kept, removed = good.count("ok") / len(good), 1 - junk.count("ok") / len(junk)
        assert len(good) > 150 and len(junk) > 50
        assert kept >= 0.94, f"{language}: good kept {kept:.3f} of {len(good)}"
        assert removed >= 0.88, f"{language}: junk removed {removed:.3f} of {len(junk)}"
    other = [o for d, o in zip(docs, outcomes, strict=True) if d.label == "other"]
    assert other.count("language") / len(other) >= 0.9
    # The previous defaults (datatrove's FineWeb pipeline, C4's line rules on) lost a third of real manuals.
    strict = DocumentProcessor(
        PipelineConfig.for_source(
            "mixed",
            {
                "english": {
                    "c4_line_rules": True,
                    "c4_curly_bracket": True,
                    "c4_min_sentences": 5,
                    "max_dup_line_char_ratio": 0.01,
                    "ngram_limit_scale": 1.0,
                    "min_line_punct_ratio": 0.12,
                }
            },
        )
    )
    good_en = [d for d in eval_set.good if d.language == "en"]
    strict_kept = sum(p.outcome == "ok" for p in strict.process([Record(i, d.text) for i, d in enumerate(good_en)]))
    assert strict_kept / len(good_en) < 0.8


def test_near_dup_recall_at_real_edit_rates(eval_set: dmu_eval.EvalSet) -> None:
    docs, labels = eval_set.dedup_stream()
    dedup = Deduplicator(DedupConfig(exact=False))
    flags = [v == "near_dup" for v in dedup.decide([normalize(d.text) for d in docs]).verdict]
    rate_of = {d.base: d.edit_rate for d in docs if d.label == "variant"}
    tp = sum(f and g for f, g in zip(flags, labels, strict=True))
    precision, recall = tp / max(sum(flags), 1), tp / max(sum(labels), 1)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)
    for language in ("en", "zh"):
        for rate, floor in ((0.10, 0.9), (0.15, 0.8)):
            hits = [
                f
                for d, f, g in zip(docs, flags, labels, strict=True)
                if g and d.language == language and rate_of.get(d.base or d.id) == rate
            ]
            assert len(hits) >= 10 and sum(hits) / len(hits) >= floor, (language, rate, sum(hits), len(hits))


def test_mostly_command_chinese_pages_shingle_consistently(eval_set: dmu_eval.EvalSet) -> None:
    """Chinese man pages that are mostly commands (CJK share of letters <= 0.3): both sides of a pair get
    the same script-aware shingles, so a variant keeps a high Jaccard with its base."""
    by_id = {d.id: d for d in eval_set.good}
    pairs = [
        (by_id[v.base], v) for v in eval_set.variants if v.language == "zh" and v.edit_rate <= 0.05 and cjk_share(by_id[v.base].text) <= 0.3
    ]
    assert len(pairs) >= 3
    for base, variant in pairs:
        a, b = shingles(normalize(base.text), ngram=5), shingles(normalize(variant.text), ngram=5)
        assert len(a & b) / len(a | b) >= 0.6, base.origin


def test_exclusion_log_cli_rest_and_summary(
    db_url: str, http: httpx.Client, tmp_path: Path, monkeypatch, eval_set: dmu_eval.EvalSet
) -> None:
    good = [d for d in eval_set.good if d.language == "en"][:20]
    junk = [d for d in eval_set.junk if d.kind == "keyword_spam" and d.language == "en"][:3]
    variant = next(v for v in eval_set.variants if v.language == "en" and v.edit_rate == 0.05)
    base = next(d for d in eval_set.good if d.id == variant.base)
    texts = [base.text] + [d.text for d in good if d.id != base.id] + [d.text for d in junk] + [variant.text, base.text]
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts) + "{broken\n")
    data_dir = tmp_path / "data"  # the live server's data dir (conftest)
    sessions = make_session_factory(make_engine(db_url))
    with sessions() as session:
        source = Source(name="manuals", language="en", pipeline={})
        session.add(source)
        session.commit()
        run = start_run(session=session, source=source, inputs=[corpus], tokenizer_path=None)
    run = execute_run(session_factory=sessions, data_dir=data_dir, run_id=run.id)
    n = len(texts)
    # Real manual sections can near-duplicate each other too: the variant is one near_dup, maybe not the only one.
    assert 1 <= run.counts["near_dup"] <= 3 and run.counts["exact_dup"] == 1 and run.counts["malformed"] == 1
    samples = run.counts["samples"]
    variant_sample = next(s for s in samples["near_dup"] if s["document"] == f"{run.id}:0:{n - 2}")
    assert variant_sample["duplicate_of"] == f"{run.id}:0:0" and 0.5 <= variant_sample["value"] <= 1.0
    assert samples["exact_dup"] == [{"document": f"{run.id}:0:{n - 1}", "value": 1.0, "duplicate_of": f"{run.id}:0:0"}]
    assert set(samples) >= {"near_dup", "exact_dup", "malformed"}

    # REST: paged, by rule, by document
    page = http.get(f"/runs/{run.id}/exclusions", params={"limit": 2}, headers=auth())
    assert page.status_code == 200, page.text
    first = page.json()
    assert len(first["items"]) == 2 and first["next_after"] is not None
    rest = http.get(f"/runs/{run.id}/exclusions", params={"after": first["next_after"], "limit": 1000}, headers=auth()).json()
    everything = first["items"] + rest["items"]
    assert rest["next_after"] is None and len({e["id"] for e in everything}) == len(everything)
    assert len(everything) == n + 1 - run.counts["kept"]
    assert {e["rule"] for e in everything} >= {"near_dup", "exact_dup", "malformed"}
    near = http.get(f"/runs/{run.id}/exclusions", params={"rule": "near_dup"}, headers=auth()).json()["items"]
    assert (f"{run.id}:0:{n - 2}", f"{run.id}:0:0") in [(e["document"], e["duplicate_of"]) for e in near]
    assert len(near) == run.counts["near_dup"] and near[0]["file"] == str(corpus.resolve())
    one = http.get(f"/runs/{run.id}/exclusions", params={"id": f"{run.id}:0:{n}"}, headers=auth()).json()["items"]
    assert [e["rule"] for e in one] == ["malformed"]
    assert http.get(f"/runs/{run.id}/exclusions", params={"id": "nope"}, headers=auth()).status_code == 422
    assert http.get("/runs/999/exclusions", headers=auth()).status_code == 404

    # CLI
    monkeypatch.setenv("HEURIMENTOR_DMU_DATABASE_URL", db_url)
    monkeypatch.setenv("HEURIMENTOR_DMU_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HEURIMENTOR_DMU_AUTH_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["dmu", "run", "why", str(run.id), "--rule", "near_dup", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert f"{run.id}:0:0" in [r["duplicate_of"] for r in rows] and all(r["rule"] == "near_dup" for r in rows)
    result = CliRunner().invoke(app, ["dmu", "run", "why", str(run.id), "--id", f"{run.id}:0:{n - 1}"])
    assert result.exit_code == 0 and "exact_dup" in result.output, result.output
    bad = CliRunner().invoke(app, ["dmu", "run", "why", str(run.id), "--id", "1-2-3"])
    assert bad.exit_code == 1 and "RUN:FILE:RECORD" in bad.output
