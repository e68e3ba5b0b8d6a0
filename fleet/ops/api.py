"""HTTP client of one tenant's runtime API (127.0.0.1 only, bearer token).

A long-running gateway in front of the tenants' APIs would build on this client.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx

from fleet.core.errors import FleetTimeout, RuntimeApiError, TenantNotRunning
from fleet.core.hosting import Tenant


def api(t: Tenant, timeout: float = 15.0) -> RuntimeClient:
    """A client of the tenant's runtime API; TenantNotRunning unless it serves."""
    if not t.running or not t.url or not t.token:
        raise TenantNotRunning(t.name, t.state)
    return RuntimeClient(t.url, t.token, timeout=timeout)


def terminal(status: object) -> bool:
    """Whether a run in ``status`` has ended (the runtime's own definition)."""
    from agent_runtime import RunStatus

    return status in {s.value for s in RunStatus if s.terminal}


class RuntimeClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 15.0) -> None:
        # trust_env=False: a proxy from the environment must never see loopback traffic or
        # the token.
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            trust_env=False,
        )

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def close(self) -> None:
        self._http.close()

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def submit(
        self, workflow: str, input: dict[str, Any], run_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"workflow": workflow, "input": input}
        if run_id is not None:
            body["id"] = run_id
        return self._json("POST", "/v1/runs", json=body)

    def get(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/runs/{_seg(run_id)}")

    def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` runs, newest pages first as the API returns them."""
        runs: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(runs) < limit:
            params: dict[str, Any] = {"limit": min(100, limit - len(runs))}
            if status:
                params["status"] = status
            if workflow:
                params["workflow"] = workflow
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", "/v1/runs", params=params)
            runs.extend(page.get("runs", []))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return runs[:limit]

    def activity(self) -> dict[str, Any]:
        """Idle time, runs executing, the earliest durable deadline (``GET /v1/activity``)."""
        return self._json("GET", "/v1/activity")

    def runs_page(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page as the API returns it: ``{"runs": [...], "next_cursor"}``."""
        given = {"status": status, "workflow": workflow, "limit": limit, "cursor": cursor}
        return self._json("GET", "/v1/runs", params={k: v for k, v in given.items() if v})

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/v1/runs/{_seg(run_id)}/events").get("events", []))

    def signal(self, run_id: str, name: str, payload: Any) -> dict[str, Any]:
        return self._json("POST", f"/v1/runs/{_seg(run_id)}/signals/{_seg(name)}", json=payload)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/runs/{_seg(run_id)}/cancel")

    def wait(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Poll until the run is terminal; FleetTimeout after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            run = self.get(run_id)
            if terminal(run.get("status")):
                return run
            if time.monotonic() >= deadline:
                raise FleetTimeout(
                    f"run {run_id!r} still {run.get('status')} after {timeout:g}s",
                    "raise --timeout, or check it later with `fleet runs`",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            err = RuntimeApiError(f"runtime API: {resp.status_code} {_error_text(resp)}")
            err.status = resp.status_code
            raise err
        try:
            data = resp.json()
        except ValueError:
            raise RuntimeApiError(f"runtime API answered non-JSON ({resp.status_code})") from None
        if not isinstance(data, dict):
            raise RuntimeApiError("runtime API answered an unexpected JSON shape")
        return data


def _seg(part: str) -> str:
    """One URL path segment (ids and signal names may hold '/', '?' ...)."""
    return quote(part, safe="")


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        err = err.get("message") or err.get("type")
    if isinstance(body, dict) and not err:
        err = body.get("detail") or body.get("message")
    return str(err or resp.reason_phrase).splitlines()[0][:300]
