"""The console's pages and actions: each a thin wrapper around one ops/ function (the same
ones the CLI calls), rendered by a template. Blocking work (engines, object storage, a
tenant's API) runs in the server's thread pool; errors become an error page in one place
(``failure``), with the one-line message the CLI would print.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, InvalidArgument, translate
from fleet.core.log import log
from fleet.ops.run_source import RunSource, SourceCache, open_source

from .render import environment
from .security import CSRF_FIELD, csrf_value, same
from .timeline import timeline

PAGE_SIZE = 50
# "Fork at this run's point": a transaction is shipped about a second after its commit, so
# the state that holds the run's last event is the one replicated a little later.
FORK_SLACK_S = 2.0
STATUS_OF_EXIT = {2: 400, 3: 404, 4: 502, 5: 502, 6: 502, 7: 504, 8: 409}


class Refused(FleetError):
    """A state-changing request without the page's CSRF value."""

    exit_code = 2


Endpoint = Callable[["Pages", Request], Awaitable[Response]]


def guarded(fn: Endpoint) -> Endpoint:
    @functools.wraps(fn)
    async def endpoint(self: Pages, request: Request) -> Response:
        try:
            return await fn(self, request)
        except Exception as exc:
            return self.failure(exc)

    return endpoint


class Pages:
    def __init__(self, fleet: Fleet, token: str, sources: SourceCache) -> None:
        self.fleet = fleet
        self.sources = sources
        self.csrf = csrf_value(token)
        self.env = environment()

    def html(self, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(template).render(csrf=self.csrf, **context)
        return HTMLResponse(body, status_code=code)

    def failure(self, exc: Exception) -> Response:
        err = translate(exc) or _runtime_error(exc)
        if err is None:
            log.error("console_request_failed", error=type(exc).__name__, exc_info=True)
            err = FleetError("internal error (see the console's log)")
        status = 403 if isinstance(exc, Refused) else STATUS_OF_EXIT.get(err.exit_code, 500)
        return self.html("error.html", status, message=err.line())

    async def form(self, request: Request) -> dict[str, str]:
        """The posted fields (text only), once the CSRF value checks out."""
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not same(fields.get(CSRF_FIELD), self.csrf):
            raise Refused("the form is stale or not from this console", "reload the page")
        return fields

    # -- pages

    @guarded
    async def tenants(self, request: Request) -> Response:
        label = " ".join(request.query_params.getlist("label")).strip()
        return await run_in_threadpool(self._tenants, label)

    def _tenants(self, label: str) -> Response:
        from fleet.ops.status import ls

        wanted = names.parse_labels(label.replace(",", " ").split())
        now = time.time()
        rows = [row.as_dict(now) for row in ls(self.fleet, wanted or None)]
        return self.html("tenants.html", rows=rows, label=label, now=now)

    @guarded
    async def tenant(self, request: Request) -> Response:
        q = request.query_params
        tenant = request.path_params["tenant"]
        args = (q.get("status") or None, q.get("workflow") or None, q.get("cursor") or None)
        return await run_in_threadpool(self._tenant, tenant, *args)

    def _tenant(
        self, tenant: str, status: str | None, workflow: str | None, cursor: str | None
    ) -> Response:
        from agent_runtime import RunStatus

        statuses = [s.value for s in RunStatus]
        if status is not None and status not in statuses:
            raise InvalidArgument(f"unknown status {status!r}", f"one of {', '.join(statuses)}")
        source = open_source(self.fleet, tenant, self.sources)
        page = source.runs(status=status, workflow=workflow, limit=PAGE_SIZE, cursor=cursor)
        return self.html(
            "tenant.html",
            tenant=tenant,
            source=source,
            page=page,
            status=status or "",
            workflow=workflow or "",
            statuses=statuses,
            paged=cursor is not None,
        )

    @guarded
    async def run(self, request: Request) -> Response:
        p = request.path_params
        return await run_in_threadpool(self._run, p["tenant"], p["run_id"], "run.html")

    @guarded
    async def live(self, request: Request) -> Response:
        """The part of the run page that changes while the run is in flight."""
        p = request.path_params
        return await run_in_threadpool(self._run, p["tenant"], p["run_id"], "live.html")

    def _run(self, tenant: str, run_id: str, template: str) -> Response:
        source: RunSource = open_source(self.fleet, tenant, self.sources)
        run = source.run(run_id)
        events = source.events(run_id)
        last = max((e.created_at for e in events), default=run.updated_at)
        return self.html(
            template,
            tenant=tenant,
            source=source,
            run=run,
            tl=timeline(run, events),
            events=len(events),
            fork_at=last + FORK_SLACK_S,
            fork_name=f"{tenant}-fork"[:63],
        )

    # -- actions (POST, CSRF-checked)

    @guarded
    async def signal(self, request: Request) -> Response:
        from fleet.ops import runs

        form = await self.form(request)
        tenant, run_id = request.path_params["tenant"], request.path_params["run_id"]
        name = form.get("name", "").strip()
        # allow_file=False: "@path" would read a file of the console's host.
        payload = runs.parse_json(form.get("payload") or "null", "payload", allow_file=False)
        await run_in_threadpool(runs.signal, self.fleet, tenant, run_id, name, payload)
        return RedirectResponse(request.url_for("run", tenant=tenant, run_id=run_id), 303)

    @guarded
    async def cancel(self, request: Request) -> Response:
        from fleet.ops import runs

        await self.form(request)
        tenant, run_id = request.path_params["tenant"], request.path_params["run_id"]
        await run_in_threadpool(runs.cancel, self.fleet, tenant, run_id)
        return RedirectResponse(request.url_for("run", tenant=tenant, run_id=run_id), 303)

    @guarded
    async def download(self, request: Request) -> Response:
        form = await self.form(request)
        tenant = request.path_params["tenant"]
        path, tmp = await run_in_threadpool(self._pull, tenant, form.get("at") or None)
        return FileResponse(
            path,
            filename=path.name,
            media_type="application/vnd.sqlite3",
            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
        )

    def _pull(self, tenant: str, at: str | None) -> tuple[Path, str]:
        from fleet.ops.pull import pull

        names.check_tenant(tenant)
        s3 = self.fleet.storage.for_fleet()
        tmp = tempfile.mkdtemp(prefix="fleet-console-pull-")
        try:
            result = pull(s3, tenant, Path(tmp, _download_name(tenant, at)), at=at)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return result.path, tmp

    @guarded
    async def fork(self, request: Request) -> Response:
        from fleet.ops.fork import fork

        form = await self.form(request)
        src, new = request.path_params["tenant"], form.get("new", "").strip()
        at = form.get("at", "").strip() or None
        await run_in_threadpool(functools.partial(fork, self.fleet, src, new, at=at))
        return RedirectResponse(request.url_for("tenant", tenant=new), 303)


def _download_name(tenant: str, at: str | None) -> str:
    if not at:
        return f"{tenant}.db"
    from fleet.storage.litestream import parse_timestamp

    stamp = datetime.fromisoformat(parse_timestamp(at)).astimezone(UTC)
    return f"{tenant}-{stamp.strftime('%Y%m%dT%H%M%SZ')}.db"


def _runtime_error(exc: Exception) -> FleetError | None:
    """agent_runtime's errors reading a copy (a damaged or too new database) for the user."""
    from agent_runtime import AgentRuntimeError

    return (
        FleetError(str(exc).splitlines()[0][:300]) if isinstance(exc, AgentRuntimeError) else None
    )
