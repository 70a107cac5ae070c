"""The operator exactly as the chart installs it: the container's args and env from `helm template`,
run as processes (`heurimentor <args>`, the image's entrypoint) against the real apiserver under the
chart's least-privilege ClusterRole. Replicas 1 and 2, standalone and peering.

What differs from a pod, and why: the metrics/health ports get free ports (the replicas share this
machine's network), the Downward API's metadata.name is a made-up pod name, the TSM token Secret
reference gets a literal, and KUBECONFIG stands in for the in-cluster ServiceAccount.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from heurimentor_operator.config import OperatorSettings, peering_priority
from tests.operator.testlib import CHART, free_port, wait_for
from tests.operator.testlib_manifests import job


def render(kube, *values: str) -> list[dict]:
    """The operator's Deployment and peering object (if any) of the chart rendered with ``values``."""
    out = subprocess.run(
        [str(kube.bin_dir / "helm"), "template", "hm", str(CHART), "--namespace", "heurimentor-system", *values],
        capture_output=True,
        text=True,
        check=True,
    )
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return [
        d
        for d in docs
        if (d["kind"] == "Deployment" and d["metadata"]["name"] == "hm-operator") or d["kind"] in ("ClusterKopfPeering", "KopfPeering")
    ]


def command_line(deployment: dict, pod_name: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the Deployment's operator container, as the kubelet would start it."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = []
    for arg in container["args"]:
        if arg.startswith(("--metrics-port=", "--health-port=")):
            arg = f"{arg.split('=')[0]}={free_port()}"
        args.append(arg)
    env = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = pod_name
        elif "secretKeyRef" in source:
            env[entry["name"]] = "token-from-the-secret"
        else:
            raise AssertionError(f"env {entry['name']}: a source this test does not resolve: {source}")
    return [sys.executable, "-m", "heurimentor", *args], env


@contextmanager
def replica(argv: list[str], env: dict[str, str], kubeconfig: Path, log_path: Path) -> Iterator[subprocess.Popen]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEURIMENTOR_OPERATOR_")}
    full_env.update(env, KUBECONFIG=str(kubeconfig))
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def small(name: str, replicas: int) -> dict:
    body = job(name=name, elastic={"replicas": replicas})
    for pool in body["spec"]["pools"]:
        pool["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    return body


def wait_replicas(jobs, name: str, replicas: int, log: Path, what: str) -> None:
    try:
        wait_for(what, lambda: jobs.status(name).get("replicas") == replicas, timeout=30)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- {log.name}:\n{log.read_text()[-4000:]}") from None


def assert_lean_json_logs(log_path: Path) -> None:
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines, f"{log_path.name}: no log lines"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert not any("settings" in e for e in entries), "kopf's settings leaked into a log line"
    # A traceback ("exc") is as long as it is; every other field stays short.
    longest = max((json.dumps({k: v for k, v in e.items() if k != "exc"}) for e in entries), key=len)
    assert len(longest) < 1000, f"{log_path.name}: a {len(longest)}-byte log line: {longest[:300]}"


def peers(kube, peering: str) -> dict[str, dict]:
    out = kube.kubectl("get", "clusterkopfpeering", peering, "-o", "json", check=False)
    return (json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def apply_peering(kube, docs: list[dict]) -> str:
    peering = next(d for d in docs if d["kind"] == "ClusterKopfPeering")
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(peering))
    return peering["metadata"]["name"]


def test_standalone_replica_reconciles_and_uses_no_peering(kube, jobs, operator_kubeconfig, tmp_path):
    docs = render(kube, "--set", "operator.replicas=1", "--set", "operator.peering.standalone=true")
    assert [d["kind"] for d in docs] == ["Deployment"], "standalone must render no peering object"
    deployment = docs[0]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    argv, env = command_line(deployment, pod_name="hm-operator-7c9d-standalone")
    assert "--standalone" in argv and not any(a.startswith("--peering") for a in argv), argv
    log = tmp_path / "standalone.log"
    with replica(argv, env, operator_kubeconfig, log):
        assert jobs.apply(small("alone", 2)).returncode == 0
        wait_replicas(jobs, "alone", 2, log, "the standalone operator reconciles")
    assert "Pausing" not in log.read_text()
    assert_lean_json_logs(log)


def test_single_peering_replica_reconciles_and_its_successor_acts_at_once(kube, jobs, operator_kubeconfig, tmp_path):
    docs = render(kube, "--set", "operator.replicas=1", "--set", f"operator.peering.name=hm-one-{uuid.uuid4().hex[:6]}")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    peering = apply_peering(kube, docs)
    argv, env = command_line(deployment, pod_name="hm-operator-5f6b-aaaaa")
    with replica(argv, env, operator_kubeconfig, tmp_path / "first.log") as first:
        assert jobs.apply(small("single", 1)).returncode == 0
        wait_replicas(jobs, "single", 1, tmp_path / "first.log", "one peering replica reconciles")
        first.send_signal(signal.SIGKILL)  # as when the node dies: no goodbye in the peering object
        first.wait()
    assert "hm-operator-5f6b-aaaaa" in peers(kube, peering)
    # The Deployment's replacement pod: a new name, so a new priority, never a tie with the dead one.
    argv, env = command_line(deployment, pod_name="hm-operator-5f6b-bbbbb")
    log = tmp_path / "second.log"
    with replica(argv, env, operator_kubeconfig, log):
        # Python and kopf take their seconds to start (more on a loaded machine): time from when it is up.
        wait_for("the successor is up", lambda: "Initial authentication has finished" in log.read_text(), timeout=90)
        kube.kubectl("scale", "a2j/single", "-n", jobs.ns, "--replicas=2")
        started = time.monotonic()
        wait_replicas(jobs, "single", 2, log, "the restarted replica acts on a scale")
        took = time.monotonic() - started
    print(f"successor acted on a scale {took:.1f}s after it was up")
    assert took < 10, f"the successor waited {took:.1f}s"
    assert "Pausing all operators" not in log.read_text()
    assert_lean_json_logs(log)


def test_two_replicas_get_distinct_priorities_and_one_takes_over_within_10s(kube, jobs, operator_kubeconfig, tmp_path):
    peering_name = f"hm-two-{uuid.uuid4().hex[:6]}"
    docs = render(kube, "--set", f"operator.peering.name={peering_name}")  # the chart's default: 2 replicas
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    apply_peering(kube, docs)
    pods = ["hm-operator-6d8f9-k2x7q", "hm-operator-6d8f9-r4m8z"]
    lines = [command_line(deployment, pod_name=pod) for pod in pods]
    logs = [tmp_path / f"{pod}.log" for pod in pods]
    with replica(*lines[0], operator_kubeconfig, logs[0]) as a, replica(*lines[1], operator_kubeconfig, logs[1]) as b:
        seen = wait_for("both replicas in the peering object", lambda: len(p := peers(kube, peering_name)) == 2 and p, timeout=60)
        priorities = {pod: entry["priority"] for pod, entry in seen.items()}
        assert set(priorities) == set(pods) and len(set(priorities.values())) == 2, priorities
        assert jobs.apply(small("paired", 2)).returncode == 0
        wait_replicas(jobs, "paired", 2, logs[0], "the pair reconciles")
        active, standby = (a, b) if priorities[pods[0]] > priorities[pods[1]] else (b, a)
        standby_pod = pods[1] if standby is b else pods[0]
        active.send_signal(signal.SIGKILL)
        active.wait()
        killed = time.monotonic()
        kube.kubectl("scale", "a2j/paired", "-n", jobs.ns, "--replicas=3")
        wait_replicas(jobs, "paired", 3, logs[pods.index(standby_pod)], "the standby takes over")
        took = time.monotonic() - killed
        assert standby.poll() is None
    print(f"take-over after SIGKILL of the active replica: {took:.1f}s")
    assert took < 10, f"take-over took {took:.1f}s"
    for log in logs:
        assert "Pausing all operators, including self" not in log.read_text()
        assert_lean_json_logs(log)


def test_cli_standalone_excludes_peering(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "heurimentor", "operator", "run", "--standalone", "--peering", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )
    assert out.returncode == 2 and "--standalone and --peering exclude each other" in out.stderr, out.stderr


def test_priority_comes_from_the_pod_name_unless_given():
    a, b = OperatorSettings(pod_name="hm-operator-6d8f9-k2x7q"), OperatorSettings(pod_name="hm-operator-6d8f9-r4m8z")
    assert peering_priority(a) != peering_priority(b)
    assert peering_priority(a) == peering_priority(OperatorSettings(pod_name="hm-operator-6d8f9-k2x7q"))
    assert peering_priority(OperatorSettings(pod_name="x", priority=7)) == 7
