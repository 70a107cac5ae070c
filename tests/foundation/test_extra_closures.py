"""Each image's extra is its import closure: a venv per extra (trainer, operator, dmu, tsm) holding
only what ``pip install '.[<extra>]'`` brings, from the wheelhouse, non-editable (the project as a
built wheel, so the CRD must be package data), imports its deployable and runs its entrypoint
against real servers.

The venvs are cached under ``$HEURIMENTOR_CACHE/extra-venvs/<extra>-<hash>`` (torch alone is ~5 GB
installed), the hash taken over the requirements the extra declares (so a dependency dropped from
an extra gives a fresh venv, which then lacks it); a change of hack/constraints.txt re-applies the
extra (pip changes only what differs), and every run reinstalls the project's own wheel, built from
the working tree, so the code under test is always the current one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.operator.testlib import free_port, wait_for, worker_kubeconfig
from tests.operator.testlib_manifests import job
from tests.trainer.testlib import base_config, make_sources, write_config

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HEURIMENTOR_CACHE", Path.home() / ".cache" / "heurimentor"))
WHEELHOUSE = CACHE / "wheels"
CONSTRAINTS = REPO / "hack" / "constraints.txt"

# What each image runs, and what it must not carry (the extras of the other images).
PACKAGES = {"trainer": ["heurimentor_trainer"], "operator": ["heurimentor_operator"], "dmu": ["dmu_service"], "tsm": ["tsm_service"]}
ABSENT = {
    "trainer": ["kubernetes", "kopf", "fastapi", "sqlalchemy", "pyarrow", "ray"],
    "operator": ["torch", "fastapi", "sqlalchemy", "tokenizers"],
    "dmu": ["torch", "kubernetes", "kopf"],
    "tsm": ["torch", "kubernetes", "kopf", "tokenizers", "pyarrow"],
}
# Not imported: a module of an extra no image installs (`torchx`: the TorchX launcher's component),
# and Alembic's scripts (env.py and the revisions run inside `alembic upgrade`, not as imports).
NOT_IMPORTED = {"heurimentor_trainer.torchx_component"}
NOT_IMPORTED_PARTS = (".migrations.env", ".migrations.versions.")


def _run(cmd: list[str], *, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _source_tree(dest: Path) -> Path:
    """The working tree as git sees it (tracked and new files, not ignored ones), links kept as links."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def project_wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = _source_tree(tmp / "src")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            "-w",
            str(tmp / "dist"),
            str(source),
        ]
    )
    (wheel,) = (tmp / "dist").glob("heurimentor-*.whl")
    return wheel


def _requirements(extra: str) -> list[str]:
    """What ``.[extra]`` asks for: the base dependencies and the extra's, self-references expanded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted, seen, pending = set(project["dependencies"]), set(), [extra]
    while pending:
        name = pending.pop()
        seen.add(name)
        for requirement in project["optional-dependencies"][name]:
            if requirement.startswith("heurimentor["):
                pending += [e for e in requirement[len("heurimentor[") : -1].split(",") if e not in seen]
            else:
                wanted.add(requirement)
    return sorted(wanted)


def _venv_key(extra: str) -> str:
    digest = hashlib.sha256("\n".join([sys.version, *_requirements(extra)]).encode())
    return f"{extra}-{digest.hexdigest()[:16]}"


@pytest.fixture(scope="module")
def extra_venv(project_wheel) -> Iterator:
    def make(extra: str) -> Path:
        venv = CACHE / "extra-venvs" / _venv_key(extra)
        venv.parent.mkdir(parents=True, exist_ok=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELHOUSE)]
        with open(f"{venv}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same venv
            marker, pins = venv / ".complete", hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
            if not marker.exists():
                shutil.rmtree(venv, ignore_errors=True)
                _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
            if not marker.exists() or marker.read_text() != pins:
                _run([*pip, "-c", str(CONSTRAINTS), f"{project_wheel}[{extra}]"], timeout=1800)
                marker.write_text(pins)
            _run([*pip, "--no-deps", "--force-reinstall", str(project_wheel)])
        return venv

    yield make


def _python(venv: Path, code: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return _run([str(venv / "bin" / "python"), "-c", code], cwd="/", **kwargs)


@pytest.mark.parametrize("extra", sorted(PACKAGES))
def test_each_extra_imports_all_of_its_deployable_and_nothing_of_the_others(extra_venv, extra):
    venv = extra_venv(extra)
    _run([str(venv / "bin" / "python"), "-m", "pip", "check"])
    code = (
        "import importlib, importlib.util, json, pkgutil, sys\n"
        f"skip, parts = {sorted(NOT_IMPORTED)!r}, {NOT_IMPORTED_PARTS!r}\n"
        "imported = []\n"
        f"for root in {PACKAGES[extra]!r} + ['heurimentor.contracts']:\n"
        "    package = importlib.import_module(root)\n"
        "    for info in pkgutil.walk_packages(package.__path__, root + '.'):\n"
        "        if info.name not in skip and not any(p in info.name + '.' for p in parts):\n"
        "            importlib.import_module(info.name)\n"
        "            imported.append(info.name)\n"
        f"absent = [m for m in {ABSENT[extra]!r} if importlib.util.find_spec(m) is None]\n"
        "print(json.dumps({'imported': imported, 'absent': absent, 'file': package.__file__}))\n"
    )
    report = json.loads(_python(venv, code).stdout)
    assert report["absent"] == ABSENT[extra]
    assert str(venv) in report["file"], "the deployable must come from the venv's site-packages, not the source tree"
    assert len(report["imported"]) > 3
    # Every image runs the one CLI; each deployable's typer app must load without the others' extras.
    assert "Usage: heurimentor" in _run([str(venv / "bin" / "heurimentor"), "--help"], cwd="/").stdout


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    name = kube.create_namespace(f"closure-{uuid.uuid4().hex[:8]}")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod_annotation(kube, namespace: str, pod: str) -> dict | None:
    body = json.loads(kube.kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
    raw = (body["metadata"].get("annotations") or {}).get("heurimentor.io/progress")
    return json.loads(raw) if raw else None


def test_trainer_extra_trains_on_cpu_and_reports_progress_to_the_apiserver(extra_venv, kube, namespace, tmp_path):
    venv = extra_venv("trainer")
    pod = "closure-cpu-0"
    kube.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": namespace},
                "spec": {"nodeName": "kwok-cpu-0", "containers": [{"name": "trainer", "image": "trainer:test"}]},
            }
        ),
    )
    # A client-certificate user bound to the chart's worker role, as the pod's ServiceAccount would be.
    kubeconfig = worker_kubeconfig(kube, namespace)
    config = write_config(
        tmp_path / "train.yaml",
        base_config(
            tmp_path, make_sources(tmp_path / "shards"), steps=4, **{"checkpoint.interval": 2, "metrics.progress_interval_steps": 2}
        ),
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "1",
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        "POD_NAME": pod,
        "POD_NAMESPACE": namespace,
        "KUBECONFIG": str(kubeconfig),
    }
    _run(
        [
            str(venv / "bin" / "torchrun"),
            "--nnodes=1",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            "--rdzv-id=closure",
            "-m",
            "heurimentor_trainer.train",
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    report = _pod_annotation(kube, namespace, pod)
    assert report is not None and report["step"] == 4 and report["tokens"] == 4 * 12 * 16, report
    assert report["checkpoint"] == {"step": 4, "path": str(tmp_path / "ckpt" / "step-00000004")}


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_operator_extra_installs_its_crd_and_reconciles_a_job(extra_venv, kube, namespace, tmp_path):
    venv = extra_venv("operator")
    heurimentor = str(venv / "bin" / "heurimentor")
    crd = _run([heurimentor, "operator", "crd"], cwd="/").stdout
    assert crd.rstrip("\n") == (REPO / "charts" / "heurimentor" / "crds" / "aquila2trainingjobs.heurimentor.io.yaml").read_text().rstrip(
        "\n"
    )
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd)
    kube.kubectl("wait", "--for=condition=Established", "crd/aquila2trainingjobs.heurimentor.io", "--timeout=30s")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(kube.kubeconfig)}
    log = tmp_path / "operator.log"
    with _server(
        [heurimentor, "operator", "run", "--standalone", "--namespace", namespace, "--metrics-port", "0", "--health-port", "0"], env, log
    ) as operator:
        body = job("closure-job", namespace)
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

        def pods() -> list[str]:
            assert operator.poll() is None, log.read_text()[-3000:]
            out = kube.kubectl("get", "pods", "-n", namespace, "-l", "heurimentor.io/job=closure-job", "-o", "name").stdout.split()
            return out

        created = wait_for("the operator's worker pods", pods, timeout=90)
        assert created and all(p.startswith("pod/closure-job-") for p in created)
        assert wait_for(
            "status.phase",
            lambda: (
                json.loads(kube.kubectl("get", "a2j", "closure-job", "-n", namespace, "-o", "json").stdout).get("status", {}).get("phase")
            ),
            timeout=60,
        )


@pytest.mark.parametrize("service", ["dmu", "tsm"])
def test_service_extra_migrates_postgresql_and_serves_readyz(extra_venv, postgres_url, tmp_path, service):
    venv = extra_venv(service)
    heurimentor = str(venv / "bin" / "heurimentor")
    prefix = f"HEURIMENTOR_{service.upper()}_"
    token = secrets.token_urlsafe(32)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        f"{prefix}ENVIRONMENT": "production",
        f"{prefix}AUTH_TOKEN": token,
        f"{prefix}DATABASE_URL": postgres_url,
        **({f"{prefix}DATA_DIR": str(tmp_path / "data")} if service == "dmu" else {}),
    }
    _run([heurimentor, service, "migrate"], env=env, cwd="/")
    port = free_port()
    log = tmp_path / f"{service}.log"
    with _server([heurimentor, service, "serve", "--host", "127.0.0.1", "--port", str(port)], env, log) as server:

        def ready() -> httpx.Response | None:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            except httpx.TransportError:
                return None
            return response if response.status_code == 200 else None

        response = wait_for(f"{service} /readyz", ready, timeout=60, interval=0.5)
        assert response.json()
