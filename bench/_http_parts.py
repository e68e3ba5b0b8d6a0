"""Part (http): part (c)'s workload submitted over HTTP to ``agent-runtime serve``.

The server runs ``bench/_workloads.py`` with ``--concurrency`` equal to the number of runs,
on a fresh SQLite file (synchronous=FULL), in its own process. The client is this process:
``clients`` threads, each with one keep-alive connection (stdlib ``http.client``: a lean
client, so that its own cost stays small beside the server's), submit ``workflows`` runs of
``steps`` no-op steps between them as fast as they are answered; a further thread polls
``/metrics`` every 5 ms until every run is completed. Timed: first submission to the poll
that sees them all completed.

Then the submission latency on an idle server: ``idle_submits`` ``POST /v1/runs`` one at a
time on one keep-alive connection, each after the previous run completed.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

WORKLOADS = str(Path(__file__).resolve().parent / "_workloads.py")
POLL_S = 0.005


class Client:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, url: str, token: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def submit(self, steps: int) -> str:
        status, body = self.call(
            "POST", "/v1/runs", {"workflow": "noop_steps", "input": {"n": steps}}
        )
        if status != 201:
            raise RuntimeError(f"POST /v1/runs answered {status}: {body[:200]!r}")
        return str(json.loads(body)["id"])

    def completed(self) -> int:
        _, body = self.call("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith('agent_runtime_runs{status="completed"}'):
                return int(line.split()[-1])
        raise RuntimeError("no completed-runs gauge in /metrics")

    def close(self) -> None:
        self.conn.close()


def _submitter(client: Client, count: int, steps: int, latencies: list[float]) -> None:
    for _ in range(count):
        t0 = time.perf_counter()
        client.submit(steps)
        latencies.append(time.perf_counter() - t0)


def concurrent(url: str, token: str, workflows: int, steps: int, clients: int) -> dict[str, Any]:
    conns = [Client(url, token) for _ in range(clients + 1)]
    poller, submitters = conns[0], conns[1:]
    latencies: list[list[float]] = [[] for _ in submitters]
    shares = [workflows // clients + (i < workflows % clients) for i in range(clients)]
    threads = [
        threading.Thread(target=_submitter, args=(c, n, steps, lat))
        for c, n, lat in zip(submitters, shares, latencies, strict=True)
    ]
    done_before = poller.completed()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submitted = time.perf_counter() - t0
    while poller.completed() - done_before < workflows:
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    posts = sorted(x for lat in latencies for x in lat)
    return {
        "elapsed_s": elapsed,
        "submitting_s": submitted,
        "posts_per_s": workflows / submitted,
        "post_p50_ms": 1000 * statistics.median(posts),
        "post_p99_ms": 1000 * posts[min(len(posts) - 1, int(0.99 * len(posts)))],
    }


def idle_submits(url: str, token: str, count: int, steps: int) -> dict[str, Any]:
    client = Client(url, token)
    latencies = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            run_id = client.submit(steps)
            latencies.append(time.perf_counter() - t0)
            while json.loads(client.call("GET", f"/v1/runs/{run_id}")[1])["status"] != "completed":
                time.sleep(0.001)
    finally:
        client.close()
    ms = sorted(1000 * x for x in latencies)
    return {
        "submit_p50_ms": statistics.median(ms),
        "submit_p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "submits": count,
    }


def run(workdir: Path, workflows: int, steps: int, clients: int, idle: int) -> dict[str, Any]:
    import _serve

    extra = ["--concurrency", str(workflows)]
    with _serve.serving(workdir / "http.db", workdir / "serve.log", WORKLOADS, extra) as srv:
        busy = concurrent(srv.url, srv.token, workflows, steps, clients)
        quiet = idle_submits(srv.url, srv.token, idle, steps)
    return {
        "value": workflows * steps / busy["elapsed_s"],
        "unit": "steps/s",
        "steps": workflows * steps,
        "clients": clients,
        **busy,
        **quiet,
    }
