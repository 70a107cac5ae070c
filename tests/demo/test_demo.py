"""The README's `make demo` path, end to end: tokenizer, DMU ingest, mixture, TSM, torchrun trainer."""

from heurimentor.demo import DemoConfig, run_demo


def test_demo_trains_on_dmu_shards_and_reports_to_the_tsm(tmp_path):
    summary = run_demo(DemoConfig(workdir=tmp_path / "demo", steps=40, workers=2))

    runs = {run["source"]: run for run in summary["runs"]}
    assert set(runs) == {"web-en", "web-zh"}
    for source, run in runs.items():
        counts = run["counts"]
        assert run["status"] == "completed", (source, run)
        # 30 exact copies were planted per source, and four junk lines (short, malformed, empty, no text).
        assert counts["exact_dup"] >= 30, (source, counts)
        assert counts["malformed"] >= 2, (source, counts)
        assert counts["kept"] > 200 and counts["tokens"] > 10_000, (source, counts)

    job = summary["job"]
    assert job["last_step"] == 40
    assert job["tokens_seen"] == 40 * 8 * 64  # steps x global batch x sequence length
    assert summary["mixture_versions"][0]["author"] == "demo"
    assert job["mixture_version"] == summary["mixture_versions"][-1]["version"]
    assert (tmp_path / "demo" / "checkpoints").is_dir()
