"""The README's `make demo`, on its real corpus at a reduced size: what it prints is what happened.

Tokenizer on Debian's English and Chinese text, DMU ingest, torchrun trainer following the mixture,
the TSM's policy, a junk source and a person's change over REST, int4, the Hugging Face export.
"""

import json

import pytest

from heurimentor.demo import DemoConfig, run_demo
from heurimentor.demo.corpus import JUNK, SOURCES
from heurimentor.demo.report import junk_weights


def test_demo_learns_real_text_and_the_tsm_takes_weight_from_junk(tmp_path):
    result = run_demo(DemoConfig(workdir=tmp_path / "demo", steps=120, corpus_scale=0.35))

    assert result.tokenizer["vocab_size"] == 4096 + 3  # BPE merges + <pad> <s> </s>
    assert result.tokenizer["chars_per_token"]["en"] > 2.5 and result.tokenizer["chars_per_token"]["zh"] > 1.2, result.tokenizer

    runs = {run["source"]: run for run in result.runs}
    assert set(runs) == {s.name for s in (*SOURCES, JUNK)}
    assert all(run["status"] == "completed" and run["counts"]["tokens"] > 10_000 for run in runs.values()), runs
    # Real text holds real near duplicates (man pages installed twice, the Edu manual of two releases),
    # and manpages-zh pages that were never translated, which the language filter drops.
    assert sum(run["counts"]["near_dup"] for run in runs.values()) >= 10
    assert runs["man-zh"]["counts"]["languages_dropped"].get("en", 0) > 0
    assert result.near_duplicates and all(kept != dropped for dropped, kept, _, _ in result.near_duplicates)

    checks = result.checks
    # Below the unigram baseline on average by a wide margin, and on no source clearly above it: at 120
    # steps a source the policy starved still lags (the full demo's 240 steps end 0.8-2.3 nats below on each).
    margins = {s.name: checks["unigram"][s.name] - checks["final_val"][s.name] for s in SOURCES}
    assert sum(margins.values()) / len(margins) > 0.3 and min(margins.values()) > -0.1, margins

    junk = junk_weights(result)
    assert junk["added"] == pytest.approx(0.5)
    assert junk["tsm_versions"] >= 1 and junk["after_tsm"] < junk["added"], junk
    added, person = result.changes
    assert (added.who, person.who) == ("careless-user", "person")
    # A REST change is trained on from the step after the one running when the PUT returned; one more
    # when the step boundary fell between the PUT's answer and the trainer's long-poll hearing of it.
    # The demo changes the mixture just after a TSM update, so the trainer trains on the change itself.
    for change in (added, person):
        assert change.adopted_at_step - change.step_in_progress in (1, 2) and change.adopted_version == change.version, change
    assert result.steps[max(result.steps)] >= person.version

    assert all(0.97 < checks["retained"][lang] <= 1.01 for lang in ("en", "zh")), checks["retained"]
    assert checks["hf_max_logit_difference"] <= 1e-5
    assert set(checks["generations"]) == {"en", "zh"}

    png, page = tmp_path / "demo" / "demo.png", tmp_path / "demo" / "index.html"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    html = page.read_text()
    assert "<img src='demo.png'" in html and "mixture_update" in html and JUNK.name in html
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["junk"] == junk and summary["val_loss_vs_unigram"]["man-zh"]["unigram"] == checks["unigram"]["man-zh"]
