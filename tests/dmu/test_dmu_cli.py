"""`heurimentor dmu …` and `heurimentor mixture …` through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heurimentor.cli import app
from tests.dmu.testlib import TOKEN, live_server, make_doc, settings_for


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HEURIMENTOR_DMU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEURIMENTOR_DMU_AUTH_TOKEN", TOKEN)
    return tmp_path


def _ok(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_migrate_source_ingest_runs(cli_env: Path, tokenizer_path: Path) -> None:
    _ok("dmu", "migrate")
    _ok("dmu", "source", "add", "web-en", "--language", "en", "--domain", "web")
    bad = CliRunner().invoke(app, ["dmu", "source", "add", "bad", "--language", "fr"])
    assert bad.exit_code == 1 and "invalid" in bad.output
    assert CliRunner().invoke(app, ["dmu", "source", "add", "web-en", "--language", "en"]).exit_code == 1
    corpus = cli_env / "in.jsonl"
    corpus.write_text("".join(json.dumps({"text": make_doc("en", s)}) + "\n" for s in [1, 2, 3, 1]) + "{oops\n")
    result = _ok("dmu", "ingest", "web-en", str(corpus), "--tokenizer", str(tokenizer_path))
    assert '"kept": 3' in result.output and '"exact_dup": 1' in result.output and '"malformed": 1' in result.output
    assert "web-en" in _ok("dmu", "run", "list").output
    shown = json.loads(_ok("dmu", "run", "show", "1").output)
    assert shown["status"] == "completed" and shown["progress"]["files_done"] == 1
    missing = CliRunner().invoke(app, ["dmu", "ingest", "nope", str(corpus)])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    refused = CliRunner().invoke(app, ["dmu", "run", "discard", "1"])
    assert refused.exit_code == 1 and "only an unfinished run" in refused.output


def test_mixture_get_and_set(cli_env: Path, postgres_url: str) -> None:
    with live_server(settings_for(postgres_url, cli_env / "data")) as url:
        import httpx

        for name in ("web-en", "books-zh"):
            httpx.post(f"{url}/sources", json={"name": name, "language": "en"}, headers={"Authorization": f"Bearer {TOKEN}"})
        created = json.loads(_ok("mixture", "set", "main", "web-en=3", "books-zh=1", "--url", url, "--reason", "start").output)
        assert created["version"] == 1 and created["weights"]["web-en"] == 0.75
        updated = json.loads(_ok("mixture", "set", "main", "web-en=1", "--url", url, "--if-match", "1").output)
        assert updated["version"] == 2
        conflict = CliRunner().invoke(app, ["mixture", "set", "main", "web-en=2", "--url", url, "--if-match", "1"])
        assert conflict.exit_code == 1 and "changed since version 1" in conflict.output
        invalid = CliRunner().invoke(app, ["mixture", "set", "main", "web-en=-2", "--url", url])
        assert invalid.exit_code == 1 and "422" in invalid.output
        assert CliRunner().invoke(app, ["mixture", "set", "main", "web-en", "--url", url]).exit_code == 1
        assert json.loads(_ok("mixture", "get", "main", "--url", url).output)["version"] == 2
        history = json.loads(_ok("mixture", "get", "main", "--history", "--url", url).output)
        assert [v["reason"] for v in history] == ["start", ""]
        assert CliRunner().invoke(app, ["mixture", "get", "nope", "--url", url]).exit_code == 1


def test_serve_runs_uvicorn_on_a_migrated_database(tmp_path: Path, postgres_url: str) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    env = {
        **os.environ,
        "HEURIMENTOR_DMU_DATABASE_URL": postgres_url,
        "HEURIMENTOR_DMU_AUTH_TOKEN": TOKEN,
        "HEURIMENTOR_DMU_DATA_DIR": str(tmp_path),
    }
    command = str(Path(sys.executable).parent / "heurimentor")  # the installed console script
    subprocess.run([command, "dmu", "migrate"], env=env, check=True, capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([command, "dmu", "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz")
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "dmu serve did not answer within 60 s"
                time.sleep(0.2)
        assert response.json() == {"status": "ready"}
    finally:
        server.terminate()
        server.wait(timeout=20)
