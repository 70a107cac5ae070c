"""The operator, as a non-admin user holding only the chart's ClusterRole, against the real control
plane with KWOK GPU nodes of two types (A100, H800)."""

from __future__ import annotations

import json
import os
import urllib.request
import uuid

import pytest

from tests.operator.testlib import TSM_TOKEN, free_port, running_operator, wait_for, worker_kubeconfig
from tests.operator.testlib_manifests import job

METRICS_PORT = free_port()


@pytest.fixture(scope="module", autouse=True)
def operator(operator_kubeconfig):
    with running_operator(operator_kubeconfig, metrics_port=METRICS_PORT) as runner:
        yield runner


def small(name, **overrides):
    """A job whose pods each take 1 GPU (8 fit on one fake node), quick timeouts."""
    body = job(name=name, **overrides)
    for pool in body["spec"]["pools"]:
        pool["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    return body


def phases(pods):
    return sorted(p["status"].get("phase") for p in pods)


def running_count(jobs, name):
    return sum(p["status"].get("phase") == "Running" for p in jobs.pods(name))


def test_pools_land_on_their_gpu_nodes_with_the_torchrun_contract(kube, jobs):
    body = small("hetero", elastic={"replicas": 3})  # a100 pool max 1, the rest on h800
    assert jobs.apply(body).returncode == 0
    pods = wait_for("3 running pods", lambda: (p := jobs.pods("hetero")) and len(p) == 3 and phases(p) == ["Running"] * 3 and p)
    nodes = {n["metadata"]["name"]: n for n in json.loads(kube.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    by_pool = {}
    for p in pods:
        pool = p["metadata"]["labels"]["heurimentor.io/pool"]
        accel = nodes[p["spec"]["nodeName"]]["metadata"]["labels"]["heurimentor.io/accelerator"]
        by_pool.setdefault(pool, set()).add(accel)
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Aquila2TrainingJob"
    assert by_pool == {"a100": {"nvidia-a100"}, "h800": {"nvidia-h800"}}
    status = wait_for("status Running with 3 replicas", lambda: (s := jobs.status("hetero")).get("replicas") == 3 and s)
    assert status["phase"] == "Running" and status["worldSize"] == 24
    assert {p["name"]: p["batchShare"] for p in status["pools"]} == {"a100": 19, "h800": 77}
    cm = json.loads(kube.kubectl("get", "configmap", "hetero-config", "-n", jobs.ns, "-o", "json").stdout)
    assert set(cm["data"]) == {"train-a100.yaml", "train-h800.yaml"}
    svc = json.loads(kube.kubectl("get", "service", "hetero", "-n", jobs.ns, "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "None"
    # Printer columns: kubectl get shows phase and replicas.
    table = kube.kubectl("get", "a2j", "hetero", "-n", jobs.ns).stdout
    assert "PHASE" in table and "Running" in table.splitlines()[1]
    reasons = {e["reason"] for e in jobs.events("hetero")}
    assert {"Created", "Running"} <= reasons

    # The first pods are named in the Created event, or in a CreatedPods one when the first pass
    # created the config and service before the pods.
    def creations() -> str:
        return " ".join(e["message"] for e in jobs.events("hetero") if e["reason"] in ("Created", "CreatedPods"))

    wait_for("an Event naming the created pods", lambda: "hetero-a100-0" in creations() and "hetero-h800-1" in creations())


def test_pods_made_while_the_status_write_lost_a_race_are_named(kube, jobs, monkeypatch):
    """Pods go out together with the status write; when that write loses a race (kopf adding its
    finalizer, a user's edit), the next pass finds the pods made, so the lost pass names them."""
    from heurimentor_operator.k8s import Conflict, Kube

    write_status, lost = Kube.patch_job_status, []

    def first_write_loses(self, namespace, name, resource_version, status):
        if name == "racing" and not lost:
            lost.append(resource_version)
            raise Conflict(f"{name} changed (lost on purpose by the test)")
        return write_status(self, namespace, name, resource_version, status)

    monkeypatch.setattr(Kube, "patch_job_status", first_write_loses)
    assert jobs.apply(small("racing", elastic={"replicas": 2})).returncode == 0
    wait_for("2 running", lambda: running_count(jobs, "racing") == 2)
    assert lost, "the status write was never attempted"
    named = wait_for("a CreatedPods event", lambda: [e["message"] for e in jobs.events("racing") if e["reason"] == "CreatedPods"])
    assert "racing-a100-0" in named[0] and "racing-h800-0" in named[0]
    assert wait_for("Created recorded", lambda: jobs.condition("racing", "Created").get("status") == "True")


def test_kubectl_scale_uses_the_scale_subresource(kube, jobs):
    assert jobs.apply(small("scaled", elastic={"replicas": 1})).returncode == 0
    wait_for("1 running", lambda: running_count(jobs, "scaled") == 1)

    def config_version() -> str:
        return json.loads(kube.kubectl("get", "configmap", "scaled-config", "-n", jobs.ns, "-o", "json").stdout)["metadata"][
            "resourceVersion"
        ]

    before = config_version()
    kube.kubectl("scale", "a2j/scaled", "-n", jobs.ns, "--replicas=4")
    wait_for("4 running", lambda: running_count(jobs, "scaled") == 4 and jobs.status("scaled").get("replicas") == 4)
    assert config_version() == before, "a rescale rewrote the ConfigMap"
    scale = json.loads(
        kube.kubectl("get", "--raw", f"/apis/heurimentor.io/v1alpha1/namespaces/{jobs.ns}/aquila2trainingjobs/scaled/scale").stdout
    )
    assert scale["status"]["replicas"] == 4 and "heurimentor.io/job=scaled" in scale["status"]["selector"]
    refused = kube.kubectl("scale", "a2j/scaled", "-n", jobs.ns, "--replicas=9", check=False)
    assert refused.returncode != 0 and "elastic.replicas must lie within" in refused.stderr
    kube.kubectl("scale", "a2j/scaled", "-n", jobs.ns, "--replicas=2")
    wait_for("2 pods", lambda: len(jobs.pods("scaled")) == 2)
    assert sorted(p["metadata"]["name"] for p in jobs.pods("scaled")) == ["scaled-a100-0", "scaled-h800-0"]


def test_pending_pods_shrink_the_job_and_it_grows_back(kube, jobs):
    label = f"pool-{uuid.uuid4().hex[:6]}"
    kube.add_kwok_nodes(1, f"kwok-{label}", accelerator="nvidia-l40", gpus=8, labels={"heurimentor.io/test-pool": label})
    body = job(name="shrinky", elastic={"minReplicas": 1, "replicas": 3, "pendingTimeoutSeconds": 2})
    body["spec"]["pools"] = [
        {"name": "l40", "nodeSelector": {"heurimentor.io/test-pool": label}, "resources": {"limits": {"nvidia.com/gpu": 8}}}
    ]
    assert jobs.apply(body).returncode == 0
    shrunk = wait_for(
        "shrink to 1", lambda: (s := jobs.status("shrinky")).get("targetReplicas") == 1 and s.get("replicas") == 1 and s, timeout=30
    )
    scaling = next(c for c in shrunk["conditions"] if c["type"] == "Scaling")
    assert scaling["status"] == "True" and scaling["reason"] == "InsufficientCapacity"
    assert shrunk["phase"] == "Running"
    # One Running and one Pending probe; the third pod was removed.
    wait_for("running + probe", lambda: phases(jobs.pods("shrinky")) == ["Pending", "Running"])
    assert "InsufficientCapacity" in {e["reason"] for e in jobs.events("shrinky")}
    kube.add_kwok_nodes(2, f"kwok-{label}", accelerator="nvidia-l40", gpus=8, labels={"heurimentor.io/test-pool": label})
    grown = wait_for(
        "grow back to 3", lambda: (s := jobs.status("shrinky")).get("replicas") == 3 and s.get("targetReplicas") == 3 and s, timeout=30
    )
    assert next(c for c in grown["conditions"] if c["type"] == "Scaling")["status"] == "False"
    assert "CapacityRecovered" in {e["reason"] for e in jobs.events("shrinky")}


def test_failures_restart_the_gang_with_backoff_until_the_limit(kube, jobs):
    body = small("flaky", elastic={"replicas": 2}, runPolicy={"backoffLimit": 1, "restartBackoffSeconds": 1})
    assert jobs.apply(body).returncode == 0
    first = wait_for("2 running", lambda: (p := jobs.pods("flaky")) and phases(p) == ["Running", "Running"] and p)
    jobs.exit_pod("flaky-h800-0", 137)
    wait_for("restart 1, attempt 1", lambda: (s := jobs.status("flaky")).get("restarts") == 1 and s.get("attempt") == 1)
    second = wait_for(
        "2 new running pods",
        lambda: (
            (p := jobs.pods("flaky"))
            and phases(p) == ["Running", "Running"]
            and all(x["metadata"]["labels"]["heurimentor.io/attempt"] == "1" for x in p)
            and p
        ),
    )
    assert {p["metadata"]["uid"] for p in second}.isdisjoint(p["metadata"]["uid"] for p in first)
    jobs.exit_pod("flaky-a100-0", 1)
    failed = wait_for("Failed", lambda: (s := jobs.status("flaky")).get("phase") == "Failed" and s)
    cond = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert cond["reason"] == "BackoffLimitExceeded" and "flaky-a100-0 exited 1" in cond["message"]
    wait_for("running pods cleaned", lambda: all(p["status"]["phase"] not in ("Running", "Pending") for p in jobs.pods("flaky")))
    restarting = [e for e in jobs.events("flaky") if e["reason"] == "Restarting"]
    assert restarting and "exited 137" in restarting[0]["message"] and restarting[0]["type"] == "Warning"


def test_success_then_ttl_deletes_the_job_and_garbage_collection_its_pods(kube, jobs):
    body = small("done", elastic={"replicas": 2}, runPolicy={"ttlSecondsAfterFinished": 2})
    assert jobs.apply(body).returncode == 0
    wait_for("2 running", lambda: running_count(jobs, "done") == 2)
    for p in jobs.pods("done"):
        jobs.exit_pod(p["metadata"]["name"], 0)
    wait_for("Succeeded", lambda: jobs.status("done").get("phase") == "Succeeded")
    wait_for("job deleted by TTL", lambda: jobs.get("done") is None, timeout=30)
    wait_for(
        "pods, config and service collected",
        lambda: (
            not jobs.pods("done")
            and kube.kubectl("get", "configmap,service", "-n", jobs.ns, "-l", "heurimentor.io/job=done", "-o", "name").stdout.strip() == ""
        ),
        timeout=60,
    )


def test_suspend_deletes_pods_and_resume_recreates_them(kube, jobs):
    assert jobs.apply(small("pausable", elastic={"replicas": 2})).returncode == 0
    wait_for("2 running", lambda: running_count(jobs, "pausable") == 2)
    kube.kubectl("patch", "a2j", "pausable", "-n", jobs.ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":true}}}')
    wait_for("Suspended, no pods", lambda: jobs.status("pausable").get("phase") == "Suspended" and not jobs.pods("pausable"))
    assert jobs.condition("pausable", "Suspended")["status"] == "True"
    assert kube.kubectl("get", "configmap", "pausable-config", "-n", jobs.ns, check=False).returncode == 0
    kube.kubectl("patch", "a2j", "pausable", "-n", jobs.ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}')
    wait_for("Running again", lambda: jobs.status("pausable").get("phase") == "Running" and running_count(jobs, "pausable") == 2)
    assert jobs.condition("pausable", "Suspended")["reason"] == "JobResumed"
    assert {"Suspended", "Resumed"} <= {e["reason"] for e in jobs.events("pausable")}


def test_deleting_the_job_removes_everything(kube, jobs):
    assert jobs.apply(small("gone", elastic={"replicas": 2})).returncode == 0
    wait_for("2 running", lambda: running_count(jobs, "gone") == 2)
    kube.kubectl("delete", "a2j", "gone", "-n", jobs.ns, "--wait=true", "--timeout=30s")
    wait_for(
        "pods, config and service collected",
        lambda: (
            not jobs.pods("gone")
            and kube.kubectl("get", "configmap,service", "-n", jobs.ns, "-l", "heurimentor.io/job=gone", "-o", "name").stdout.strip() == ""
        ),
        timeout=60,
    )


def test_rollback_annotation_and_progress_reports(kube, jobs):
    assert jobs.apply(small("rolling", elastic={"replicas": 1}, hyperparameters={"steps": 100})).returncode == 0
    wait_for("1 running", lambda: running_count(jobs, "rolling") == 1)
    progress = json.dumps({"step": 40, "loss": 2.25, "mixtureVersion": 3, "checkpoint": {"step": 40, "path": "/ckpt/step-00000040"}})
    kube.kubectl("annotate", "pod", "rolling-a100-0", "-n", jobs.ns, f"heurimentor.io/progress={progress}")
    status = wait_for("step 40 in status", lambda: (s := jobs.status("rolling")).get("step") == 40 and s)
    assert (status["loss"], status["mixtureVersion"], status["progress"]) == (2.25, 3, "40.0%")
    columns = kube.kubectl("get", "a2j", "rolling", "-n", jobs.ns, "--no-headers").stdout.split()
    assert "40" in columns and "2.25" in columns and "3" in columns
    kube.kubectl("annotate", "a2j", "rolling", "-n", jobs.ns, "heurimentor.io/rollback-to-step=20")
    pod = wait_for(
        "pod of attempt 1", lambda: [p for p in jobs.pods("rolling") if p["metadata"]["labels"]["heurimentor.io/attempt"] == "1"]
    )
    env = {e["name"]: e.get("value") for e in pod[0]["spec"]["containers"][0]["env"]}
    assert env["HEURIMENTOR_ROLLBACK_TO_STEP"] == "20"
    assert jobs.status("rolling")["rollback"]["step"] == 20
    assert "Rollback" in {e["reason"] for e in jobs.events("rolling")}
    # A refused request, then a good one: the status holds the good one and no stale error.
    kube.kubectl("annotate", "a2j", "rolling", "-n", jobs.ns, "heurimentor.io/rollback-to-step=soon", "--overwrite")
    wait_for("refusal in status", lambda: "error" in jobs.status("rolling").get("rollback", {}))
    kube.kubectl("annotate", "a2j", "rolling", "-n", jobs.ns, "heurimentor.io/rollback-to-step=10", "--overwrite")
    rollback = wait_for("rollback to 10", lambda: (r := jobs.status("rolling").get("rollback", {})).get("step") == 10 and r)
    assert "error" not in rollback and rollback["attempt"] == 2


@pytest.fixture
def tsm(postgres_url):
    """A real TSM on PostgreSQL that wants a token for writes (the operator's is set in conftest)."""
    import httpx

    from hack.testenv.asgi import serve_app
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    upgrade(postgres_url)
    settings = load_settings(
        database_url=postgres_url,
        evaluate_interval_seconds=0,
        log_json=False,
        auth_token=TSM_TOKEN,
        detectors={"spike": {"rollback_margin_steps": 10}},
    )
    with (
        serve_app(create_app(settings), name="TSM") as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TSM_TOKEN}"}) as client,
    ):
        yield client  # reads need the token too: they are closed in production


def report(tsm, job, steps, bad=None):
    """A trainer's loss and grad norm per step; ``bad`` maps a step to the metric that turns non-finite there."""
    from heurimentor.contracts.metrics import MetricBatch

    bad = bad or {}
    points = [
        {
            "step": s,
            "rank": 0,
            "time": 1.7e9 + s,
            "tokens_seen": 1000 * s,
            "scalars": {"loss": 2.0, "grad_norm": 1.0, **({bad[s]: float("nan")} if s in bad else {})},
        }
        for s in steps
    ]
    batch = MetricBatch.model_validate({"batch_id": uuid.uuid4().hex, "points": points})
    response = tsm.post(f"/v1/jobs/{job}/metrics", content=batch.model_dump_json(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_a_suspended_job_is_paused_on_the_tsm_and_resumed(kube, jobs, tsm):
    """Suspending stops the workers; without a word to the TSM their silence would read as a stall."""
    body = small("napping", elastic={"replicas": 1}, tsm={"url": str(tsm.base_url)})
    assert jobs.apply(body).returncode == 0
    wait_for("1 running", lambda: running_count(jobs, "napping") == 1)
    report(tsm, f"{jobs.ns}.napping", range(0, 5))
    kube.kubectl("patch", "a2j", "napping", "-n", jobs.ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":true}}}')
    paused = wait_for("suspended on the TSM", lambda: tsm.get(f"/v1/jobs/{jobs.ns}.napping").json()["suspended_at"])
    assert tsm.post(f"/v1/jobs/{jobs.ns}.napping/evaluate").json() == []
    assert paused > 0
    kube.kubectl("patch", "a2j", "napping", "-n", jobs.ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}')
    wait_for("resumed on the TSM", lambda: tsm.get(f"/v1/jobs/{jobs.ns}.napping").json()["suspended_at"] is None)


def test_tsm_rollback_recommendations_are_applied_and_acknowledged(kube, jobs, tsm):
    """The loop the report ran by hand: a divergence reaches a real TSM, which recommends a rollback;
    the operator restarts the workers from before it, skipping its data, and closes the recommendation."""
    tsm_url = str(tsm.base_url)

    def recommendations():
        return {r["id"]: r for r in tsm.get(f"/v1/jobs/{jobs.ns}.spiky/rollbacks").json()}

    body = small("spiky", elastic={"replicas": 1}, hyperparameters={"steps": 100}, tsm={"url": tsm_url, "autoRollback": True})
    assert jobs.apply(body).returncode == 0
    wait_for("1 running", lambda: running_count(jobs, "spiky") == 1)
    assert jobs.status("spiky").get("attempt", 0) == 0  # a TSM that knows nothing of the job changes nothing

    # An old divergence the run has left behind, then two in a row: three recommendations. One
    # restart answers the two (before both, skipping both); the old one is superseded.
    # (The TSM makes one recommendation per series that went non-finite in a batch.)
    report(tsm, f"{jobs.ns}.spiky", range(0, 42), bad={5: "lr", 40: "loss", 41: "grad_norm"})
    by_step = {r["skip_to_step"]: r for r in recommendations().values()}
    assert {s: r["resume_before_step"] for s, r in by_step.items()} == {5: 0, 40: 30, 41: 31}
    pod = wait_for("pod of attempt 1", lambda: [p for p in jobs.pods("spiky") if p["metadata"]["labels"]["heurimentor.io/attempt"] == "1"])
    env = {e["name"]: e.get("value") for e in pod[0]["spec"]["containers"][0]["env"]}
    assert (env["HEURIMENTOR_ROLLBACK_TO_STEP"], env["HEURIMENTOR_ROLLBACK_SKIP_STEPS"]) == ("30", "30-41")
    rollback = jobs.status("spiky")["rollback"]
    answered = "+".join(str(i) for i in sorted((by_step[40]["id"], by_step[41]["id"])))
    assert (rollback["step"], rollback["skipSteps"], rollback["requestId"]) == (30, [30, 41], f"tsm/{answered}")
    closed = wait_for(
        "recommendations closed", lambda: all(r["status"] != "open" for r in recommendations().values()) and recommendations()
    )
    assert {r["skip_to_step"]: r["status"] for r in closed.values()} == {5: "dismissed", 40: "acknowledged", 41: "acknowledged"}
    assert {"TSMRollback", "Rollback"} <= {e["reason"] for e in jobs.events("spiky")}

    # A later divergence: its recommendation restarts the workers again.
    report(tsm, f"{jobs.ns}.spiky", range(42, 46), bad={45: "loss"})
    third = max(recommendations())
    assert recommendations()[third]["resume_before_step"] == 35
    wait_for("pod of attempt 2", lambda: [p for p in jobs.pods("spiky") if p["metadata"]["labels"]["heurimentor.io/attempt"] == "2"])
    assert wait_for("third acknowledged", lambda: recommendations()[third]["status"] == "acknowledged")
    assert jobs.status("spiky")["restarts"] == 0  # rollbacks are not failures


def test_status_follows_the_trainers_progress_reporter(kube, jobs):
    """heurimentor_trainer.progress as the worker would run it (the chart's worker role, no more): .status follows."""
    from heurimentor_trainer.progress import ProgressReporter

    assert jobs.apply(small("reported", elastic={"replicas": 1}, hyperparameters={"steps": 100})).returncode == 0
    wait_for("1 running", lambda: running_count(jobs, "reported") == 1)
    reporter = ProgressReporter("reported-a100-0", jobs.ns, interval_steps=10, kubeconfig=str(worker_kubeconfig(kube, jobs.ns)))
    reporter.step(29, loss=1.75, mixture_version=1, tokens=29 * 96 * 128)  # between intervals: recorded, not sent
    reporter.step(30, loss=1.5, mixture_version=2, tokens=30 * 96 * 128)
    reporter.checkpoint(30, "/ckpt/step-00000030")
    reporter.close()
    status = wait_for(
        "step 30 and its checkpoint in status", lambda: (s := jobs.status("reported")).get("step") == 30 and s.get("lastCheckpoint") and s
    )
    assert (status["loss"], status["mixtureVersion"], status["tokens"], status["progress"]) == (1.5, 2, 30 * 96 * 128, "30.0%")
    assert status["lastCheckpoint"] == {"step": 30, "path": "/ckpt/step-00000030"}


def test_a_worker_pod_run_for_real_trains_reports_to_the_tsm_and_fills_the_status(kube, jobs, tmp_path):
    """The operator's own pod object and ConfigMap, run as the kubelet would run them: the command
    with $(VAR) expanded from the pod's env, the pool's config file, fieldRefs resolved. What
    differs, because this machine has no container runtime or cluster DNS: the process runs here,
    the rendezvous host is 127.0.0.1 and the mounted paths are temp folders (set in the spec)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import httpx
    import numpy as np

    from hack.testenv.asgi import serve_app
    from heurimentor.contracts.shards import Manifest, write_shard
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    rng = np.random.default_rng(0)
    for source in ("en", "zh"):
        folder = tmp_path / "shards" / source
        folder.mkdir(parents=True)
        info = write_shard(folder / "00000.bin", [rng.integers(0, 500, size=int(rng.integers(30, 90))) for _ in range(40)], 512)
        Manifest(source=source, tokenizer_id="test", vocab_size=512, shards=[info]).write(folder)
    upgrade(f"sqlite:///{tmp_path / 'tsm.db'}")
    tsm_app = create_app(
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'tsm.db'}", evaluate_interval_seconds=0, log_json=False, environment="development"
        )
    )  # open TSM: the worker here sends no token
    with serve_app(tsm_app, name="TSM") as tsm_url:
        body = small(
            "real",
            elastic={"minReplicas": 1, "maxReplicas": 1, "replicas": 1},
            nprocPerNode=2,
            data={"shardRoot": str(tmp_path / "shards"), "dmuUrl": None, "mixture": None},
            tsm={"url": tsm_url},
            checkpoint={"path": str(tmp_path / "ckpt"), "intervalSteps": 1},
            metrics={"prometheusPort": 0},
            hyperparameters={"globalBatchSize": 4, "microBatchSize": 1, "steps": 2, "seqLen": 16, "learningRate": 1e-3},
        )
        body["spec"]["data"] = {k: v for k, v in body["spec"]["data"].items() if v is not None}
        applied = jobs.apply(body)
        assert applied.returncode == 0, applied.stderr
        [pod] = wait_for("the worker pod running", lambda: [p for p in jobs.pods("real") if p["status"].get("phase") == "Running"])
        config_map = json.loads(kube.kubectl("get", "configmap", "real-config", "-n", jobs.ns, "-o", "json").stdout)
        [config_volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
        [item] = config_volume["configMap"]["items"]
        (tmp_path / "train.yaml").write_text(config_map["data"][item["key"]])

        [container] = pod["spec"]["containers"]
        env: dict[str, str] = {}
        for var in container["env"]:
            if "valueFrom" in var:
                path = var["valueFrom"]["fieldRef"]["fieldPath"]
                env[var["name"]] = pod["metadata"][path.removeprefix("metadata.")]
            else:
                env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        assert env["PET_RDZV_ENDPOINT"] == f"a100-0.real.{jobs.ns}.svc:29400"
        env["PET_RDZV_ENDPOINT"] = f"127.0.0.1:{free_port()}"  # no cluster DNS here
        command = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["command"]]
        assert command[0] == "torchrun" and command[-2:] == ["--config", "/etc/heurimentor/train.yaml"]
        command = [str(Path(sys.executable).parent / "torchrun"), *command[1:-1], str(tmp_path / "train.yaml")]
        process_env = {k: v for k, v in os.environ.items() if not k.startswith("HEURIMENTOR_")}
        process_env.update(
            env, OMP_NUM_THREADS="1", KUBECONFIG=str(worker_kubeconfig(kube, jobs.ns)), PYTHONPATH=str(Path(__file__).resolve().parents[2])
        )
        result = subprocess.run(command, env=process_env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-5000:]

        # The trainer reported to the TSM under the job's TSM name, and its progress reached .status.
        job = httpx.get(f"{tsm_url}/v1/jobs/{jobs.ns}.real").json()
        assert job["last_step"] == 2 and job["tokens_seen"] == 2 * 4 * 16 and job["completed_step"] == 2
        status = wait_for("step 2 in status", lambda: (s := jobs.status("real")).get("step") == 2 and s)
        assert status["lastCheckpoint"]["step"] == 2 and status["lastCheckpoint"]["path"].startswith(str(tmp_path / "ckpt"))


def test_metrics_count_jobs_and_reconciles():
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert values["heurimentor_operator_jobs_created_total"] >= 8
    assert values["heurimentor_operator_jobs_succeeded_total"] >= 1
    assert values["heurimentor_operator_jobs_failed_total"] >= 1
    assert values["heurimentor_operator_jobs_restarted_total"] >= 1
    assert values["heurimentor_operator_reconcile_duration_seconds_count"] > 10
