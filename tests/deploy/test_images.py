"""The images `make images` built, run with runc (hack/testenv/containers.py): read-only root
filesystem, uid 10001, in a network namespace each test creates (loopback only).

The services' and migrations' containers get exactly the args and env that `helm template` renders
for them (Secret references resolved from the rendered Secrets, service names from /etc/hosts
entries pointing at the namespace's loopback): the chart's bundled PostgreSQL image, the migration
hook, the DMU and the TSM answering /readyz, and the `helm test` pod's check. The operator image
reconciles a job on the real apiserver, reached through a relay into the namespace; the trainer
image trains a few CPU steps.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from hack.testenv.containers import Container, NetworkNamespace, UnixRelay, image_config, wait_http
from hack.testenv.kube import tools_bin_dir
from tests.operator.testlib import wait_for
from tests.operator.testlib_manifests import job
from tests.trainer.testlib import base_config, make_sources, write_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "heurimentor"
NAMES = ("postgresql", "operator", "dmu", "tsm", "trainer")
PG_ISREADY = "/usr/lib/postgresql/15/bin/pg_isready"


class Images(dict):
    """name -> tag of the images of the current sources: `hack/build-images.sh NAME` on first use, a
    no-op when `make images` (a prerequisite of `make test`) already built them."""

    def __missing__(self, name: str) -> str:
        out = subprocess.run([str(ROOT / "hack" / "build-images.sh"), name], capture_output=True, text=True, timeout=3600)
        assert out.returncode == 0, f"building {name}: {out.stderr[-3000:]}"
        self[name] = f"localhost/heurimentor/{name}:{version('heurimentor')}"
        return self[name]


@pytest.fixture(scope="session")
def images() -> Images:
    return Images()


@pytest.fixture
def netns() -> Iterator[NetworkNamespace]:
    ns = NetworkNamespace()
    yield ns
    ns.close()


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A folder the containers' uid 10001 can write (binds and runc's bundles live here)."""
    os.chown(tmp_path, 10001, 10001)
    return tmp_path


def rendered(*values: str) -> list[dict]:
    out = subprocess.run(
        [
            str(tools_bin_dir() / "helm"),
            "template",
            "hm",
            str(CHART),
            "-n",
            "hm",
            "--set",
            "images.registry=localhost/heurimentor",
            *values,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def pod_containers(docs: list[dict], kind: str, name: str) -> list[dict]:
    return find(docs, kind, name)["spec"]["template"]["spec"]["containers"]


def resolved_env(container: dict, docs: list[dict], pod_name: str = "pod-0") -> dict[str, str]:
    """The container's env as the kubelet gives it: values, Secret keys (from the rendered Secrets), pod name."""
    env = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:  # $(NAME) of an earlier variable is expanded, as the kubelet does
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(entry["value"]))
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = base64.b64decode(find(docs, "Secret", ref["name"])["data"][ref["key"]]).decode()
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = pod_name
        else:
            raise AssertionError(f"{entry['name']}: an env source this test does not resolve: {source}")
    return env


def writable_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 10001, 10001)
    return path


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("operator", ["operator", "run", "--help"], "--standalone"),
        ("dmu", ["dmu", "serve", "--help"], "--port"),
        ("tsm", ["tsm", "serve", "--help"], "--port"),
        ("trainer", None, "--config"),  # the image's CMD: heurimentor_trainer.train --help
        ("postgresql", None, None),
    ],
)
def test_image_is_non_root_labelled_and_starts(images, netns, workdir, name, args, expected):
    image = images[name]
    config = image_config(image)
    assert config["User"] == "10001:10001", config.get("User")
    assert config["Labels"]["org.opencontainers.image.title"] == f"heurimentor-{name}"
    assert config["Labels"]["org.opencontainers.image.version"] == version("heurimentor")
    assert config["Labels"]["org.opencontainers.image.base.name"].startswith("localhost/heurimentor/bookworm-slim-")
    if expected is None:  # the database's start is the services' test
        return
    out = Container(image, args, netns=netns, workdir=workdir, name=name).run(timeout=180)
    assert out.returncode == 0 and expected in out.stdout, f"{out.stdout[-1500:]} {out.stderr[-1500:]}"


@pytest.fixture
def platform(images, netns, workdir) -> Iterator[tuple[list[dict], dict[str, Container]]]:
    """The chart's bundled PostgreSQL, migration hook, DMU and TSM containers, running in ``netns``."""
    docs = rendered()
    hosts = {"hm-postgresql": "127.0.0.1", "hm-dmu": "127.0.0.1", "hm-tsm": "127.0.0.1"}
    running: dict[str, Container] = {}
    try:
        (pg,) = pod_containers(docs, "StatefulSet", "hm-postgresql")
        running["postgresql"] = Container(
            images["postgresql"],
            pg.get("args"),
            netns=netns,
            env=resolved_env(pg, docs),
            workdir=workdir,
            name="postgresql",
            binds={writable_dir(workdir / "pgdata"): "/var/lib/postgresql/data", writable_dir(workdir / "pgrun"): "/var/run/postgresql"},
        ).start()
        wait_for(
            "the bundled PostgreSQL",
            lambda: netns.run([PG_ISREADY, "-h", "127.0.0.1", "-q"]).returncode == 0 or not running["postgresql"].running(),
            timeout=90,
        )
        assert running["postgresql"].running(), running["postgresql"].logs()[-3000:]
        for migrate in find(docs, "Job", "hm-migrate")["spec"]["template"]["spec"]["containers"]:
            component = migrate["name"].removesuffix("-migrate")
            out = Container(
                images[component],
                migrate["args"],
                netns=netns,
                env=resolved_env(migrate, docs),
                hosts=hosts,
                workdir=workdir,
                name=migrate["name"],
            ).run(timeout=180)
            assert out.returncode == 0, f"{migrate['name']}: {out.stdout[-2000:]} {out.stderr[-2000:]}"
        for component in ("dmu", "tsm"):
            (c,) = pod_containers(docs, "Deployment", f"hm-{component}")
            binds = {writable_dir(workdir / "shards"): "/data"} if component == "dmu" else {}
            running[component] = Container(
                images[component],
                c["args"],
                netns=netns,
                env=resolved_env(c, docs),
                hosts=hosts,
                binds=binds,
                workdir=workdir,
                name=component,
            ).start()
        yield docs, running
    finally:
        for container in running.values():
            container.stop()


def test_services_are_ready_against_the_bundled_postgresql_and_pass_helm_test(images, netns, workdir, platform):
    docs, running = platform
    for component, port in (("dmu", 8700), ("tsm", 8081)):
        status, body = wait_http(netns, f"http://127.0.0.1:{port}/readyz", timeout=90, container=running[component])
        assert status == 200 and json.loads(body)["status"] == "ready", f"{component}: {status} {body} {running[component].logs()[-3000:]}"
    # /metrics takes the chart's read-only metrics token (what the ServiceMonitors send), nothing less.
    metrics_token = base64.b64decode(find(docs, "Secret", "hm-tokens")["data"]["metrics-token"]).decode()
    for port in (8700, 8081):
        status, _ = wait_http(netns, f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert status == 401, (port, status)
        status, body = wait_http(netns, f"http://127.0.0.1:{port}/metrics", timeout=10, token=metrics_token)
        assert status == 200 and "# TYPE" in body, (port, status, body[:300])
    # The `helm test` hook's pod, its command as rendered, in the TSM image.
    test_pod = find(docs, "Pod", "hm-test-services")
    (check,) = test_pod["spec"]["containers"]
    out = Container(
        images["tsm"],
        check["command"][2:],
        entrypoint=check["command"][:2],
        netns=netns,
        workdir=workdir,
        hosts={"hm-dmu": "127.0.0.1", "hm-tsm": "127.0.0.1"},
        name="helm-test",
    ).run(timeout=120)
    assert out.returncode == 0 and out.stdout.count(" 200 ") == 2, out.stdout + out.stderr


def embedded_kubeconfig(kube, server: str, path: Path) -> Path:
    """The admin kubeconfig with its files inlined and ``server`` swapped in, readable by uid 10001."""
    config = yaml.safe_load(kube.kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    cluster["certificate-authority-data"] = base64.b64encode(Path(cluster.pop("certificate-authority")).read_bytes()).decode()
    cluster["server"] = server
    for key in ("client-certificate", "client-key"):
        user[f"{key}-data"] = base64.b64encode(Path(user.pop(key)).read_bytes()).decode()
    path.write_text(yaml.safe_dump(config))
    os.chown(path, 10001, 10001)
    return path


def test_operator_image_reconciles_a_job_on_the_real_apiserver(images, kube, netns, workdir):
    kube.kubectl("apply", "-f", str(CHART / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/aquila2trainingjobs.heurimentor.io")
    namespace = kube.create_namespace(f"img-{int(time.time())}")
    relay = UnixRelay(netns, inner_port=6443, outer_port=kube.api_port, workdir=workdir)
    docs = rendered("--set", "operator.replicas=1,operator.peering.standalone=true")
    (c,) = pod_containers(docs, "Deployment", "hm-operator")
    env = {**resolved_env(c, docs, pod_name="hm-operator-0"), "KUBECONFIG": "/kube/config"}
    kubeconfig_dir = writable_dir(workdir / "kube")
    embedded_kubeconfig(kube, "https://127.0.0.1:6443", kubeconfig_dir / "config")
    operator = Container(
        images["operator"], c["args"], netns=netns, env=env, binds={kubeconfig_dir: "/kube"}, workdir=workdir, name="operator"
    ).start()
    try:
        body = job(name="from-image", namespace=namespace, elastic={"replicas": 2})
        for pool in body["spec"]["pools"]:
            pool["resources"] = {"limits": {"nvidia.com/gpu": 1}}
        del body["metadata"]["uid"], body["metadata"]["resourceVersion"], body["metadata"]["generation"]
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

        def replicas():
            out = kube.kubectl("get", "a2j", "from-image", "-n", namespace, "-o", "json", check=False)
            return out.returncode == 0 and (json.loads(out.stdout).get("status") or {}).get("replicas") == 2

        wait_for("the operator container reconciles the job", lambda: replicas() or not operator.running(), timeout=90)
        assert operator.running() and replicas(), operator.logs()[-3000:]
        status, _ = wait_http(netns, "http://127.0.0.1:8081/healthz", timeout=30)
        assert status == 200  # the liveness endpoint the chart's probe and the image's HEALTHCHECK use
    finally:
        operator.stop()
        relay.close()
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_trainer_image_trains_a_few_cpu_steps(images, netns, workdir):
    run_dir = writable_dir(workdir / "run")
    config = write_config(run_dir / "train.yaml", base_config(run_dir, make_sources(run_dir / "shards"), steps=3))
    subprocess.run(["chown", "-R", "10001:10001", str(run_dir)], check=True)
    out = Container(
        images["trainer"],
        ["python3", "-m", "heurimentor_trainer.train", "--config", str(config)],
        netns=netns,
        env={"OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
        binds={run_dir: str(run_dir)},
        workdir=workdir,
        name="trainer",
    ).run(timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert (run_dir / "ckpt" / "latest").read_text() == "step-00000003"
    shutil.rmtree(run_dir / "ckpt", ignore_errors=True)
