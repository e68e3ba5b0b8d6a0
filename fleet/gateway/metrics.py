"""The gateway's Prometheus metrics (text format 0.0.4, written out)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

WAKE_BUCKETS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # by status class: 2xx, 4xx, 5xx
        self.wakes: Counter[str] = Counter()  # by reason: request, timer
        self.parks: Counter[str] = Counter()  # by reason: idle
        self.drills: Counter[str] = Counter()  # restore drills by result: passed, failed
        self.wake_failures = 0
        self.wake_buckets = [0] * len(WAKE_BUCKETS)
        self.wake_sum = 0.0
        self.wake_count = 0

    def request(self, status: int) -> None:
        self.requests[f"{status // 100}xx"] += 1

    def woke(self, reason: str, seconds: float) -> None:
        self.wakes[reason] += 1
        self.wake_sum += seconds
        self.wake_count += 1
        for i, bound in enumerate(WAKE_BUCKETS):
            if seconds <= bound:
                self.wake_buckets[i] += 1

    def render(self, states: Iterable[str]) -> str:
        by_state = Counter(states)
        lines = [
            "# HELP litefleet_gateway_tenants Tenants known to the gateway, by state.",
            "# TYPE litefleet_gateway_tenants gauge",
        ]
        gauge = "litefleet_gateway_tenants"
        lines += [f'{gauge}{{state="{s}"}} {n}' for s, n in sorted(by_state.items())]
        lines += _counter("proxied_requests", "Requests passed to tenants", "code", self.requests)
        lines += _counter("wakes", "Parked tenants woken", "reason", self.wakes)
        lines += _counter("parks", "Idle tenants parked", "reason", self.parks)
        lines += _counter(
            "restore_drills", "Restore drills (--verify-every)", "result", self.drills
        )
        lines += [
            "# HELP litefleet_gateway_wake_failures_total Wakes that failed.",
            "# TYPE litefleet_gateway_wake_failures_total counter",
            f"litefleet_gateway_wake_failures_total {self.wake_failures}",
        ]
        lines += self._histogram()
        return "\n".join(lines) + "\n"

    def _histogram(self) -> list[str]:
        name = "litefleet_gateway_wake_seconds"
        lines = [
            f"# HELP {name} From the start of a wake until the tenant answered.",
            f"# TYPE {name} histogram",
        ]
        for bound, n in zip(WAKE_BUCKETS, self.wake_buckets, strict=True):
            lines.append(f'{name}_bucket{{le="{bound}"}} {n}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.wake_count}')
        lines.append(f"{name}_sum {self.wake_sum:.6f}")
        lines.append(f"{name}_count {self.wake_count}")
        return lines


def _counter(short: str, help: str, label: str, values: Counter[str]) -> list[str]:
    name = f"litefleet_gateway_{short}_total"
    lines = [f"# HELP {name} {help}.", f"# TYPE {name} counter"]
    lines += [f'{name}{{{label}="{k}"}} {v}' for k, v in sorted(values.items())]
    return lines
