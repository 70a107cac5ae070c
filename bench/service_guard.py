"""Two figures of the service security policy (docs/security.md), each against a baseline tree.

1. ``flood``: a real ``heurimentor dmu serve`` / ``heurimentor tsm serve`` (uvicorn, loopback, production
   mode, SQLite) gets four parallel 31 MB requests without a token while an authenticated client
   reads; prints the server's resident memory before and its peak (VmHWM) during, the flood's status
   codes and the median latency of the reads.
2. ``contention``: 20 writers PUT one DMU mixture without If-Match (on PostgreSQL); prints how many
   failed with 412.

``--baseline-root DIR`` runs the servers from another checkout (e.g. ``git archive <commit> | tar -x -C DIR``)
and prints both, with the ratio. Servers run as subprocesses with that tree first on PYTHONPATH.

    .venv/bin/python bench/service_guard.py [--baseline-root /tmp/before] [--writers 20] [--rounds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hack.testenv.postgres import PostgresServer  # noqa: E402
from hack.testenv.procs import free_port  # noqa: E402

FLOOD_BYTES = 31 << 20
FLOOD_REQUESTS = 4


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


class Server:
    def __init__(self, service: str, code_root: Path, env: dict[str, str], workdir: Path) -> None:
        self.service = service
        self.port = free_port()
        prefix = f"HEURIMENTOR_{service.upper()}_"
        pythonpath = os.pathsep.join(str(code_root / sub) for sub in ("", "operator", "trainer"))
        self.env = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            **{prefix + k: v for k, v in env.items()},
            prefix + "PORT": str(self.port),
            prefix + "ENVIRONMENT": "production",
        }
        self.code_root = code_root
        self.log = open(workdir / f"{service}.log", "wb")  # noqa: SIM115 (closed in stop)

    def start(self) -> None:
        python = [sys.executable, "-m", "heurimentor", self.service]
        subprocess.run([*python, "migrate"], env=self.env, cwd=self.code_root, check=True, stdout=self.log, stderr=self.log)
        self.proc = subprocess.Popen([*python, "serve"], env=self.env, cwd=self.code_root, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError(f"{self.service} did not start; log in {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def _flood_one(port: int, method: str, path: str) -> str:
    """Send a 31 MB malformed JSON body without a token; the status, or how the connection ended."""
    body = b'{"weights": {"web-en": ' + b"9" * (FLOOD_BYTES - 40) + b"}}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        try:
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the body was read: the answer is waiting
        head = sock.recv(4096).split(b"\r\n", 1)[0].decode()
        return head.split()[1] if head else "closed"
    except (ConnectionResetError, TimeoutError) as e:
        return type(e).__name__
    finally:
        sock.close()


def flood(service: str, code_root: Path) -> dict:
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix=f"bench-{service}-") as tmp:
        env = {"AUTH_TOKEN": token}
        if service == "dmu":
            env["DATA_DIR"] = tmp
            method, path, read_path = "PUT", "/mixtures/main", "/mixtures"
        else:
            env.update(DATABASE_URL=f"sqlite:///{tmp}/tsm.db", EVALUATE_INTERVAL_SECONDS="0")
            method, path, read_path = "POST", "/v1/jobs/job-a/metrics", "/v1/jobs"
        server = Server(service, code_root, env, Path(tmp))
        server.start()
        try:
            reader = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(20):  # warm the read path before the baseline
                reader.request("GET", read_path, headers=auth)
                reader.getresponse().read()
            before_kib = _status_kib(server.proc.pid, "VmRSS")
            latencies: list[float] = []
            done = threading.Event()

            def read_loop() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    reader.request("GET", read_path, headers=auth)
                    reader.getresponse().read()
                    latencies.append(time.perf_counter() - started)

            thread = threading.Thread(target=read_loop)
            thread.start()
            with ThreadPoolExecutor(FLOOD_REQUESTS) as pool:
                codes = list(pool.map(lambda _: _flood_one(server.port, method, path), range(FLOOD_REQUESTS)))
            done.set()
            thread.join()
            peak_kib = _status_kib(server.proc.pid, "VmHWM")
        finally:
            server.stop()
    return {
        "service": service,
        "rss_before_mib": round(before_kib / 1024),
        "rss_peak_mib": round(peak_kib / 1024),
        "flood_status": codes,
        "read_median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "reads": len(latencies),
    }


def contention(code_root: Path, database_url: str, writers: int, rounds: int) -> dict:
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="bench-dmu-") as tmp:
        server = Server("dmu", code_root, {"AUTH_TOKEN": token, "DATA_DIR": tmp, "DATABASE_URL": database_url}, Path(tmp))
        server.start()
        try:
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

            def call(connection: http.client.HTTPConnection, method: str, path: str, body: dict) -> int:
                connection.request(method, path, body=json.dumps(body), headers=auth)
                response = connection.getresponse()
                response.read()
                return response.status

            setup = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            assert call(setup, "POST", "/sources", {"name": "web-en", "language": "en"}) == 201
            assert call(setup, "POST", "/mixtures", {"name": "main", "weights": {"web-en": 1.0}}) == 201
            barrier = threading.Barrier(writers)

            def writer(index: int) -> list[int]:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                statuses = []
                for round_ in range(rounds):
                    barrier.wait()
                    statuses.append(
                        call(
                            connection, "PUT", "/mixtures/main", {"weights": {"web-en": 1.0 + index + round_ / 100}, "reason": f"w{index}"}
                        )
                    )
                return statuses

            with ThreadPoolExecutor(writers) as pool:
                statuses = [s for batch in pool.map(writer, range(writers)) for s in batch]
        finally:
            server.stop()
    return {
        "writes": len(statuses),
        "status_412": statuses.count(412),
        "ok": statuses.count(200),
        "other": sorted({s for s in statuses if s not in (200, 412)}),
        "rate_412": round(statuses.count(412) / len(statuses), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-root", type=Path, help="checkout to compare against (run first)")
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", choices=["flood", "contention"])
    args = parser.parse_args()
    roots = ([("baseline", args.baseline_root)] if args.baseline_root else []) + [("this tree", ROOT)]
    results: dict[str, dict] = {}
    pg = None
    if args.only != "flood":
        pg = PostgresServer()
        pg.start()
    try:
        for label, root in roots:
            if args.only != "contention":
                for service in ("dmu", "tsm"):
                    results[f"{label} flood {service}"] = flood(service, root)
            if pg is not None:
                url = pg.create_database(f"bench_{len(results)}")
                results[f"{label} contention"] = contention(root, url, args.writers, args.rounds)
    finally:
        if pg is not None:
            pg.stop(keep_logs=False)
    for name, result in results.items():
        print(f"{name}: {json.dumps(result)}")
    if args.baseline_root:
        for service in ("dmu", "tsm"):
            base, new = results.get(f"baseline flood {service}"), results.get(f"this tree flood {service}")
            if base and new:
                print(f"{service} peak RSS under the flood, this tree / baseline: {new['rss_peak_mib'] / base['rss_peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
