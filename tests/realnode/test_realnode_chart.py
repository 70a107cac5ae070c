"""The platform as a user installs it, on the real node: `helm install` of charts/heurimentor with
deploy/values-dev.yaml (operator, DMU, TSM and PostgreSQL from the images of `make images`; the
claims bind through the node's default StorageClass), `helm test`, and the installed operator,
in its pod with its own ServiceAccount, running a job of the trainer image to Succeeded; the
user's path (a real corpus ingested by the installed DMU, a mixture published and changed over
REST, `kubectl apply -f deploy/tiny-demo.yaml` as it is, the trainers reporting to the installed
TSM, `kubectl scale` to 1 and back to 2 resuming from the demo's checkpoint claim); then the
operator's pod deleted 10 times while it reconciles a job being scaled."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hack.testenv.realnode import archive_image_name, image_archives
from heurimentor_operator.constants import KIND
from tests.operator.testlib import CHART, REPO, wait_for
from tests.realnode.testlib import TINY_DEMO, cpu_training_job, tiny_demo, training_runs
from tests.trainer.testlib import consumed_samples, make_sources

RELEASE, SYSTEM, RESEARCH = "hm", "heurimentor", "research"


def _helm(kube, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kube.bin_dir / "helm"), *args], capture_output=True, text=True, env=kube.env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def platform(real_node, a2j_crd) -> Iterator[dict[str, float]]:
    """The chart installed (`helm install`, every pod Ready, `helm test` passed); yields the figures.
    Its claims bind through the node's default StorageClass, as on a cluster that has one."""
    real_node.create_namespace(RESEARCH)
    started = time.monotonic()
    # No --wait: the migrations are a post-install hook, and the DMU and TSM are not Ready before
    # them, so `helm install --wait` can never finish (seen here; the README's line has no --wait).
    install = _helm(
        real_node,
        "install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace", "-f", str(REPO / "deploy" / "values-dev.yaml"),
        "--set", f"worker.namespaces={{{RESEARCH},{SYSTEM}}}", "--timeout", "5m",
    )  # fmt: skip
    try:
        assert install.returncode == 0, install.stderr
        real_node.kubectl("wait", "--for=condition=Ready", "pod", "--all", "-n", SYSTEM, "--timeout=180s", timeout=200)
        figures = {"helm install -> all Ready": time.monotonic() - started}
        tested = _helm(real_node, "test", RELEASE, "-n", SYSTEM, "--timeout", "3m")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        yield figures
    finally:
        _helm(real_node, "uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout", "2m")
        real_node.kubectl("delete", "namespace", RESEARCH, SYSTEM, "--wait=false", check=False)


def _job(name: str, tmp_path, **spec) -> dict:
    shards = make_sources(tmp_path / "shards", names=("en", "zh"), docs=30, shards=1)
    return cpu_training_job(
        name,
        RESEARCH,
        image=archive_image_name(image_archives(["trainer"])[0]),
        service_account="heurimentor-worker",
        shards=shards,
        **spec,
    )


def _status(kube, name: str, namespace: str = RESEARCH) -> dict:
    return json.loads(kube.kubectl("get", "a2j", name, "-n", namespace, "-o", "json").stdout).get("status", {})


def _operator_pods(kube) -> list[dict]:
    selector = "app.kubernetes.io/name=heurimentor-operator"
    return json.loads(kube.kubectl("get", "pods", "-n", SYSTEM, "-l", selector, "-o", "json").stdout)["items"]


def test_the_installed_operator_trains_a_job(real_node, platform, tmp_path):
    job = _job(
        "installed",
        tmp_path,
        hyperparameters={"globalBatchSize": 2, "steps": 8},
        elastic={"minReplicas": 1, "maxReplicas": 1, "replicas": 1},
        checkpoint={"intervalSteps": 4},
        runPolicy={"backoffLimit": 0},
    )
    submitted = time.monotonic()
    real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    final = wait_for(
        "the installed operator to finish the job",
        lambda: (s := _status(real_node, "installed")).get("phase") in ("Succeeded", "Failed") and s,
        timeout=400,
        interval=1,
    )
    figures = {**platform, "job apply -> Succeeded (installed operator)": time.monotonic() - submitted}
    print({k: round(v, 1) for k, v in figures.items()})
    assert final["phase"] == "Succeeded" and final["step"] == 8, final
    assert [c["restartCount"] for p in _operator_pods(real_node) for c in p["status"]["containerStatuses"]] == [0], (
        "the operator pod restarted"
    )


def test_the_operator_pod_deleted_10_times_while_it_reconciles(real_node, platform, tmp_path):
    """Each deletion lands while the operator acts on a `kubectl scale` (1 <-> 2 workers); its
    Deployment starts a new pod. After the last: exactly the job's pods, all owned by it, status converged."""
    job = _job(
        "churn",
        tmp_path,
        hyperparameters={"globalBatchSize": 2, "steps": 100000},
        elastic={"minReplicas": 1, "maxReplicas": 2, "replicas": 2},
        checkpoint={"intervalSteps": 50},
        runPolicy={"backoffLimit": 0, "maxRestarts": 100},
    )
    real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    uid = json.loads(real_node.kubectl("get", "a2j", "churn", "-n", RESEARCH, "-o", "json").stdout)["metadata"]["uid"]

    def job_pods() -> list[dict]:
        return json.loads(real_node.kubectl("get", "pods", "-n", RESEARCH, "-l", "heurimentor.io/job=churn", "-o", "json").stdout)["items"]

    try:
        wait_for("two Running workers", lambda: sum(p["status"].get("phase") == "Running" for p in job_pods()) == 2, timeout=180)
        seen_operators = set()
        for kill in range(10):
            (operator,) = wait_for(
                "one Ready operator pod",
                lambda: [p for p in _operator_pods(real_node) if _ready(p) and not p["metadata"].get("deletionTimestamp")],
                timeout=120,
                interval=0.5,
            )
            seen_operators.add(operator["metadata"]["uid"])
            real_node.kubectl("scale", "a2j", "churn", "-n", RESEARCH, f"--replicas={1 + kill % 2}")
            time.sleep(0.5 + 0.3 * (kill % 3))  # into the reconcile the scale started
            real_node.kubectl("delete", "pod", operator["metadata"]["name"], "-n", SYSTEM, "--wait=false")
        assert len(seen_operators) == 10, "every deletion hit another operator pod"
        # The last scale asked for 2 (kill 9: 1 + 9 % 2); the new operator converges on it.
        converged = wait_for(
            "status to converge on 2 Running workers",
            lambda: (
                (s := _status(real_node, "churn")).get("replicas") == 2
                and sum(p["status"].get("phase") == "Running" for p in job_pods()) == 2
                and s
            ),
            timeout=240,
            interval=1,
        )
        pods = job_pods()
        names = sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
        assert names == ["churn-cpu-0", "churn-cpu-1"], names
        owners = [[o["uid"] for o in p["metadata"].get("ownerReferences", []) if o.get("controller")] for p in pods]
        assert owners == [[uid]] * len(pods), f"a pod not owned by the job: {owners}"
        assert converged["phase"] == "Running", converged
    finally:
        real_node.kubectl("delete", "a2j", "churn", "-n", RESEARCH, "--wait=false", check=False)


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _exec(kube, deployment: str, *command: str, timeout: float = 300) -> str:
    return kube.kubectl("exec", "-n", SYSTEM, f"deploy/{RELEASE}-{deployment}", "--", *command, timeout=timeout).stdout


def _http_in_pod(kube, deployment: str, method: str, path: str, token_env: str, body: dict | None = None, **headers: str) -> dict:
    """A REST call from inside the service's own pod (its port on loopback, its token from its env)."""
    script = (
        "import json, os, sys, urllib.request as u; "
        f"r = u.Request('http://127.0.0.1:' + os.environ['HEURIMENTOR_{deployment.upper()}_PORT'] + {path!r}, method={method!r}, "
        f"data=(sys.argv[1].encode() or None), headers={{'Authorization': 'Bearer ' + os.environ[{token_env!r}], "
        f"'Content-Type': 'application/json', **{headers!r}}}); print(u.urlopen(r, timeout=30).read().decode())"
    )
    return json.loads(_exec(kube, deployment, "python3", "-c", script, json.dumps(body) if body else ""))


def _heurimentor(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line on the user's machine (the README's walkthrough)."""
    return subprocess.run([str(REPO / ".venv" / "bin" / "heurimentor"), *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo_data(real_node, platform, tmp_path_factory) -> dict:
    """The mixture `demo` that deploy/tiny-demo.yaml reads, as a user makes it: a real corpus and the
    trainer's tokenizer on their machine, copied into the DMU's volume and ingested by the installed
    DMU's own CLI next to the files, then the mixture created over REST. Yields the published version."""
    corpus = tmp_path_factory.mktemp("demo-data") / "corpus"
    # Real text the user did not write: Debian's English and Chinese fortunes, as the README makes it.
    for language in ("en", "zh"):
        written = _heurimentor("corpus", f"fortunes-{language}", str(corpus / f"{language}.jsonl"), "--documents", "120", "--chars", "1200")
        assert written.returncode == 0 and "120 documents" in written.stdout, written.stderr
    trained = _heurimentor("tokenizer", "train", "--en", str(corpus / "en.jsonl"), "--zh", str(corpus / "zh.jsonl"),
                           "--output", str(corpus), "--vocab-size", "480")  # fmt: skip
    assert trained.returncode == 0, trained.stderr  # 480 ids + specials: within the debug preset's 512
    pod = json.loads(real_node.kubectl("get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=heurimentor-dmu", "-o", "json").stdout)[
        "items"
    ][0]["metadata"]["name"]
    real_node.kubectl("cp", str(corpus), f"{SYSTEM}/{pod}:/data/incoming", timeout=120)
    figures = {}
    for language in ("en", "zh"):
        _exec(real_node, "dmu", "heurimentor", "dmu", "source", "add", f"fortunes-{language}", "--language", language)
        started = time.monotonic()
        _exec(real_node, "dmu", "heurimentor", "dmu", "ingest", f"fortunes-{language}", f"/data/incoming/{language}.jsonl",
              "--tokenizer", "/data/incoming/tokenizer.json")  # fmt: skip
        figures[f"dmu ingest fortunes-{language} (120 docs, in its pod)"] = time.monotonic() - started
    runs = _http_in_pod(real_node, "dmu", "GET", "/runs", "HEURIMENTOR_DMU_AUTH_TOKEN")
    assert sorted(r["status"] for r in runs) == ["completed", "completed"], runs
    assert all(r["counts"]["kept"] > 50 for r in runs), [r["counts"] for r in runs]
    published = json.loads(
        _exec(real_node, "dmu", "heurimentor", "mixture", "set", "demo", "fortunes-en=0.5", "fortunes-zh=0.5", "--reason", "first mixture",
              "--url", "http://127.0.0.1:8700")
    )  # fmt: skip
    assert published["weights"] == {"fortunes-en": 0.5, "fortunes-zh": 0.5}, published
    return {"version": published["version"], "figures": figures}


def _training_starts(kube, pod: str) -> list[dict]:
    """The trainer's "training" records in a worker's log, one per launch of its process (world size, resumed_at)."""
    logs = kube.kubectl("logs", "-n", SYSTEM, pod, "--tail=-1", check=False).stdout
    return [r for r in _json_lines(logs) if r.get("msg") == "training"]


def _switches(kube, pod: str, version: int) -> list[dict]:
    logs = kube.kubectl("logs", "-n", SYSTEM, pod, "--tail=-1", check=False).stdout
    return [r for r in _json_lines(logs) if r.get("msg") == "switched mixture at step boundary" and r.get("version") == version]


def _claim_folder(kube, claim: str) -> Path:
    """The folder of this machine that the node's StorageClass gave the claim."""
    volume = json.loads(kube.kubectl("get", "pvc", claim, "-n", SYSTEM, "-o", "json").stdout)["spec"]["volumeName"]
    return Path(json.loads(kube.kubectl("get", "pv", volume, "-o", "json").stdout)["spec"]["hostPath"]["path"])


def _assert_resumed_exactly(samples: Path, steps: int, global_batch: int) -> None:
    """From the trainers' sample log: world sizes 2, 1, 2; every step trained on a full global batch;
    a step trained again after a resume took exactly the samples it took the first time (no sample
    repeated or skipped by the resume)."""
    runs = training_runs(samples)
    worlds = [len(run["ranks"]) for run in runs.values()]
    assert [w for i, w in enumerate(worlds) if i == 0 or w != worlds[i - 1]] == [2, 1, 2], worlds
    consumed = consumed_samples(samples)
    assert sorted(consumed) == list(range(1, steps + 1)) and {len(ids) for ids in consumed.values()} == {global_batch}
    by_run: dict[int, dict[int, list[tuple[int, list[str]]]]] = {}
    for line in (line for path in sorted(samples.glob("rank*.jsonl")) for line in path.read_text().splitlines()):
        if line.endswith("}"):  # not the line a stopped worker was writing
            record = json.loads(line)
            by_run.setdefault(record["run"], {}).setdefault(record["step"], []).append((record["rank"], record["ids"]))
    # Each run's steps that all its ranks logged (a scale stops a world mid-step), as one global batch in rank order.
    trained = [
        {step: [i for _, ids in sorted(rows) for i in ids] for step, rows in steps_rows.items() if len(rows) == len(runs[run]["ranks"])}
        for run, steps_rows in sorted(by_run.items())
    ]
    retrained = 0
    for later, run in enumerate(trained[1:], start=1):
        for step, ids in run.items():
            for earlier in trained[:later]:
                if step in earlier:
                    assert earlier[step] == ids, f"step {step} took other samples after the resume"
                    retrained += 1
    assert retrained > 0, "no step was trained again: the resumes were not from an earlier checkpoint"


def test_the_users_path_ingest_publish_apply_tiny_demo_change_the_mixture_scale(real_node, demo_data):
    """tiny-demo.yaml as it ships: applied, its mixture changed over REST, `kubectl scale` to 1 and
    back to 2. Each world size resumes from the newest checkpoint on the demo's claim, both pods at
    the same step, and the trainers' sample log there shows the resumes exact."""
    manifests = tiny_demo()
    tiny = manifests[KIND]
    name, steps, interval = tiny["metadata"]["name"], tiny["spec"]["hyperparameters"]["steps"], tiny["spec"]["checkpoint"]["intervalSteps"]
    assert tiny["metadata"]["namespace"] == SYSTEM
    assert tiny["spec"]["data"]["volume"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-dmu-shards"
    claim = manifests["PersistentVolumeClaim"]["metadata"]["name"]
    assert tiny["spec"]["checkpoint"]["volume"]["persistentVolumeClaim"]["claimName"] == claim
    published, figures = {"version": demo_data["version"]}, dict(demo_data["figures"])

    # The job exactly as the repository ships it.
    submitted, starts = time.monotonic(), {}
    real_node.kubectl("apply", "-f", str(TINY_DEMO))
    try:
        wait_for("a reported step", lambda: (_status(real_node, name, SYSTEM).get("step") or 0) >= 5, timeout=300, interval=0.5)
        figures["tiny-demo apply -> step 5 in .status"] = time.monotonic() - submitted
        table = real_node.kubectl("get", "a2j", name, "-n", SYSTEM, "-o", "wide").stdout
        columns = dict(zip(*(line.split() for line in table.splitlines()[:2])))
        assert columns["MIXTURE"] == str(published["version"]) and columns["ETA"] not in ("", "<none>"), table
        # A person changes the mixture over REST (If-Match: the version they read).
        put_at = time.time()
        changed = _http_in_pod(
            real_node, "dmu", "PUT", "/mixtures/demo", "HEURIMENTOR_DMU_AUTH_TOKEN",
            {"weights": {"fortunes-en": 0.9, "fortunes-zh": 0.1}, "author": "user", "reason": "more English"},
            **{"If-Match": f'"{published["version"]}"'},
        )  # fmt: skip
        wait_for(
            "the new mixture in .status", lambda: _status(real_node, name, SYSTEM).get("mixtureVersion") == changed["version"], timeout=120
        )
        [switch] = wait_for("the switch in the log", lambda: _switches(real_node, f"{name}-cpu-0", changed["version"])[:1], timeout=60)

        # Scaled as the README says; cpu-0 survives the scale down, cpu-1 is new on the way back up.
        def checkpointed(step: int) -> bool:
            return (_status(real_node, name, SYSTEM).get("lastCheckpoint") or {}).get("step", 0) >= step

        # A checkpoint after the switch: steps trained again after a resume then took the same mixture.
        wait_for("a checkpoint after the switch", lambda: checkpointed(max(interval, switch["step"])), timeout=240, interval=0.5)
        for world in (1, 2):
            launched = len(_training_starts(real_node, f"{name}-cpu-0"))
            scaled = time.monotonic()
            real_node.kubectl("scale", "a2j", name, "-n", SYSTEM, f"--replicas={world}")
            [starts[world]] = wait_for(
                f"training at world size {world}",
                lambda w=world, n=launched: [r for r in _training_starts(real_node, f"{name}-cpu-0")[n:] if r["world_size"] == w][:1],
                timeout=240,
                interval=0.5,
            )
            figures[f"kubectl scale -> training at world size {world}"] = time.monotonic() - scaled
            resumed = starts[world]["resumed_at"]
            assert resumed > 0 and resumed % interval == 0, starts[world]
            # A checkpoint at this world size before the next scale, so the next one resumes from it.
            wait_for(f"a checkpoint at world size {world}", lambda r=resumed: checkpointed(r + interval), timeout=240, interval=0.5)
        assert starts[2]["resumed_at"] >= starts[1]["resumed_at"] + interval, starts
        # The new pod found the survivor's checkpoint on the claim (with per-pod volumes it resumed at 0).
        [new_pod_start] = [r for r in _training_starts(real_node, f"{name}-cpu-1") if r["world_size"] == 2]
        assert new_pod_start["resumed_at"] == starts[2]["resumed_at"], (new_pod_start, starts)
        final = wait_for(
            "tiny-demo to finish",
            lambda: (s := _status(real_node, name, SYSTEM)).get("phase") in ("Succeeded", "Failed") and s,
            timeout=900,
            interval=1,
        )
        figures["tiny-demo apply -> Succeeded"] = time.monotonic() - submitted
        logs = real_node.kubectl("logs", "-n", SYSTEM, f"{name}-cpu-0", "--tail=-1", check=False).stdout
        assert final["phase"] == "Succeeded" and final["step"] == steps and final["restarts"] == 0, f"{final}\n{logs[-3000:]}"
        figures["mixture PUT -> first step on it"] = switch["ts"] - put_at
        _assert_resumed_exactly(_claim_folder(real_node, claim) / "samples", steps, tiny["spec"]["hyperparameters"]["globalBatchSize"])
        # The trainers reported to the installed TSM with the chart's worker token.
        job = _http_in_pod(real_node, "tsm", "GET", f"/v1/jobs/{SYSTEM}.{name}", "HEURIMENTOR_TSM_AUTH_TOKEN")
        assert job["last_step"] == steps and job["mixture_version"] == changed["version"], job
    finally:
        print({k: round(v, 1) for k, v in figures.items()}, {f"resumed at world size {w}": r["resumed_at"] for w, r in starts.items()})
        # What a failed run needs to be understood (pytest shows it only then).
        print(real_node.kubectl("get", "pods,pvc,a2j", "-n", SYSTEM, "-o", "wide", check=False).stdout)
        for pod in (f"{name}-cpu-0", f"{name}-cpu-1"):
            print(pod, real_node.kubectl("logs", "-n", SYSTEM, pod, "--tail=60", check=False).stdout[-6000:])
        real_node.kubectl("delete", "-f", str(TINY_DEMO), "--wait=false", check=False)


def test_postgresql_tsm_and_dmu_down_while_a_job_trains(real_node, demo_data):
    """tiny-demo's spec under another name, with more steps: the PostgreSQL pod deleted, the TSM
    scaled to 0 for a minute, the DMU for 20 s. Training goes on throughout; the trainers' buffered
    metrics all reach the TSM (every step's loss, none lost), no stall is reported, and a mixture
    change made once the DMU is back is trained on."""
    job = tiny_demo()[KIND]
    job["metadata"]["name"] = "outage"
    del job["spec"]["checkpoint"]["volume"]  # tiny-demo's claim is the demo's; this job does not scale
    job["spec"]["hyperparameters"]["steps"] = 100000  # stopped by the test
    real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))

    def step() -> int:
        return _status(real_node, "outage", SYSTEM).get("step") or 0

    def trains_on(what: str) -> None:
        reached = step()
        wait_for(f"training to go on {what}", lambda: step() > reached, timeout=120, interval=1)

    def scale(deployment: str, replicas: int) -> None:
        real_node.kubectl("scale", "deployment", f"{RELEASE}-{deployment}", "-n", SYSTEM, f"--replicas={replicas}")
        if replicas:
            real_node.kubectl("rollout", "status", f"deployment/{RELEASE}-{deployment}", "-n", SYSTEM, "--timeout=180s", timeout=200)

    figures = {}
    try:
        wait_for("step 5", lambda: step() >= 5, timeout=300, interval=0.5)
        real_node.kubectl("delete", "pod", f"{RELEASE}-postgresql-0", "-n", SYSTEM)
        trains_on("while PostgreSQL restarts")
        real_node.kubectl("wait", "--for=condition=Ready", f"pod/{RELEASE}-postgresql-0", "-n", SYSTEM, "--timeout=180s", timeout=200)
        scale("tsm", 0)
        down = time.monotonic()
        trains_on("with the TSM down")
        time.sleep(max(0.0, 60 - (time.monotonic() - down)))
        scale("tsm", 1)
        back_at = step()
        scale("dmu", 0)
        trains_on("with the DMU down")
        time.sleep(20)
        scale("dmu", 1)
        current = _http_in_pod(real_node, "dmu", "GET", "/mixtures/demo/current", "HEURIMENTOR_DMU_AUTH_TOKEN")
        changed = _http_in_pod(
            real_node, "dmu", "PUT", "/mixtures/demo", "HEURIMENTOR_DMU_AUTH_TOKEN",
            {"weights": {"fortunes-en": 0.2, "fortunes-zh": 0.8}, "author": "user", "reason": "after the outage"},
            **{"If-Match": f'"{current["version"]}"'},
        )  # fmt: skip
        put_at = time.monotonic()
        wait_for(
            "the change in .status", lambda: _status(real_node, "outage", SYSTEM).get("mixtureVersion") == changed["version"], timeout=120
        )
        figures["mixture PUT after the DMU's outage -> in .status"] = time.monotonic() - put_at
        # Everything the trainers buffered while PostgreSQL and the TSM were away arrives.
        job_id = f"{SYSTEM}.outage"
        wait_for(
            "the buffered metrics at the TSM",
            lambda: (_http_in_pod(real_node, "tsm", "GET", f"/v1/jobs/{job_id}", "HEURIMENTOR_TSM_AUTH_TOKEN")["last_step"] or 0) > back_at,
            timeout=180,
            interval=2,
        )
        curve = _http_in_pod(
            real_node, "tsm", "GET", f"/v1/jobs/{job_id}/curves/scalar/loss?rank=0&max_points=100000", "HEURIMENTOR_TSM_AUTH_TOKEN"
        )
        steps = [p["step"] for p in curve["points"]]
        assert curve["bucket_steps"] == 1 and steps == list(range(1, steps[-1] + 1)) and steps[-1] > back_at, steps
        stalls = _http_in_pod(real_node, "tsm", "GET", f"/v1/jobs/{job_id}/events?kind=stall", "HEURIMENTOR_TSM_AUTH_TOKEN")
        assert stalls == [], stalls
        assert _status(real_node, "outage", SYSTEM).get("restarts", 0) == 0
    finally:
        print({k: round(v, 1) for k, v in figures.items()})
        real_node.kubectl("delete", "a2j", "outage", "-n", SYSTEM, "--wait=false", check=False)


def _json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line[line.find("{") :])
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
