"""Prometheus metrics, rendered in the text exposition format.

Hand-rolled on purpose: the runtime runs once per tenant container and prometheus_client
would cost memory in every one of them for a handful of series.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self.value = 0.0
        self._lock = threading.Lock()

    def inc(self, n: float = 1) -> None:
        with self._lock:
            self.value += n

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        yield f"{self.name} {self.value:g}"


class Histogram:
    def __init__(self, name: str, help: str, buckets: Iterable[float]) -> None:
        self.name, self.help = name, help
        self.buckets = sorted(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self.counts[i] += 1
            self.sum += value
            self.count += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            yield f'{self.name}_bucket{{le="{bound:g}"}} {running}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {self.sum:g}"
        yield f"{self.name}_count {self.count}"


STEPS_COMMITTED = Counter(
    "agent_runtime_steps_committed_total", "Step outcomes (results and final errors) committed."
)
COMMIT_SECONDS = Histogram(
    "agent_runtime_commit_seconds",
    "Latency of one group-commit transaction, fsync included.",
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
)
BATCH_SIZE = Histogram(
    "agent_runtime_group_commit_batch_size",
    "Operations committed together in one transaction.",
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
)
LOOP_BLOCKED = Histogram(
    "agent_runtime_event_loop_blocked_seconds",
    "Times the event loop ran no callback for longer than the watchdog's threshold, by how"
    " long (an async step or workflow computing or blocking without await).",
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
)


def render(
    runs_by_status: dict[str, int],
    statuses: Iterable[str],
    lease: tuple[bool, float] | None = None,
) -> str:
    lines = [
        "# HELP agent_runtime_runs Runs in the database by status.",
        "# TYPE agent_runtime_runs gauge",
    ]
    lines += [f'agent_runtime_runs{{status="{s}"}} {runs_by_status.get(s, 0)}' for s in statuses]
    for metric in (STEPS_COMMITTED, COMMIT_SECONDS, BATCH_SIZE, LOOP_BLOCKED):
        lines.extend(metric.render())
    if lease is not None:  # only with a lease file (agent-runtime serve --lease-file)
        held, valid = lease
        lines += [
            "# HELP agent_runtime_lease_held 1 while the tenant's lease is confirmed"
            " (steps run), 0 otherwise.",
            "# TYPE agent_runtime_lease_held gauge",
            f"agent_runtime_lease_held {int(held)}",
            "# HELP agent_runtime_lease_valid_seconds Seconds the confirmed lease still covers.",
            "# TYPE agent_runtime_lease_valid_seconds gauge",
            f"agent_runtime_lease_valid_seconds {valid:.3f}",
        ]
    return "\n".join(lines) + "\n"
