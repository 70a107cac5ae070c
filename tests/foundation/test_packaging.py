"""The project installs as one package with one CLI, and the operator/ source root never shadows the stdlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_heurimentor_cli_help_works():
    cli = Path(sys.executable).parent / "heurimentor"
    result = subprocess.run([str(cli), "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: heurimentor" in result.stdout


def test_import_operator_is_the_stdlib_from_the_repo_root():
    # -S: no site-packages (no editable-install finder); cwd=repo root puts operator/ first on sys.path.
    for flags in (["-S"], []):
        result = subprocess.run(
            [sys.executable, *flags, "-c", "import operator, sys; print(operator.__file__); print(operator.itemgetter)"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        module_file = Path(result.stdout.splitlines()[0])
        assert REPO_ROOT not in module_file.parents, f"{flags}: operator imported from {module_file}"
        assert module_file.name == "operator.py"


def test_operator_package_imports_under_its_own_name():
    result = subprocess.run(
        [sys.executable, "-c", "import heurimentor_operator, operator; print(heurimentor_operator.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == REPO_ROOT / "operator" / "heurimentor_operator"
