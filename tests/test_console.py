"""The web console without Docker: its waterfall from a real runtime's history, its pages
rendered from real records holding hostile content, and its token and CSRF gate in front of
the real app. (With real tenants and a real browser: tests/test_console_browser.py.)"""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_runtime import (
    RetryPolicy,
    Runtime,
    now,
    open_copy,
    sleep,
    step,
    wait_for_signal,
    workflow,
)
from fleet.console.app import build_app
from fleet.console.render import environment
from fleet.console.security import COOKIE, csrf_value
from fleet.console.timeline import timeline
from fleet.core.settings import load_settings
from fleet.ops.connect import connect
from fleet.ops.run_source import BackupSource, SourceCache

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
TRIES: dict[str, int] = {}


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.05))
async def flaky(tag: str) -> str:
    TRIES[tag] = TRIES.get(tag, 0) + 1
    if TRIES[tag] == 1:
        raise RuntimeError(f"first try of {tag} fails: {HOSTILE}")
    return f"{tag} done"


@step(name=HOSTILE)
async def named_by_an_agent() -> str:
    return HOSTILE


@workflow
async def observed(note: str) -> dict[str, Any]:
    first = await flaky("a")
    await named_by_an_agent()
    await sleep(0.05)
    approval = await wait_for_signal("approve", timeout=60)
    when = await now()
    return {"first": first, "approval": approval, "at": when.isoformat(), "note": note}


async def _waiting(rt: Runtime, run_id: str) -> None:
    for _ in range(500):
        run = await rt.store.get_run(run_id)
        if run is not None and run.status == "waiting":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{run_id} never waited for its signal")


async def _history(db: Path) -> None:
    async with Runtime(db=str(db), app=[observed]) as rt:
        await rt.submit("observed", {"note": HOSTILE}, id="r1")
        await _waiting(rt, "r1")
        await rt.submit("observed", {"note": "left waiting"}, id="r2")
        await rt.signal("r1", "approve", {"by": HOSTILE})
        assert (await rt.wait("r1", timeout=30)).status == "completed"
        await _waiting(rt, "r2")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "tenant.db"
    asyncio.run(_history(path))
    return path


def test_a_finished_run_as_a_waterfall(db: Path) -> None:
    with open_copy(db) as copy:
        run, events = copy.run("r1"), copy.history("r1")
    tl = timeline(run, events)
    kinds = [(r.kind, r.state) for r in tl.rows]
    assert kinds == [
        ("submitted", "ok"),
        ("step", "retried"),
        ("step", "ok"),
        ("step", "ok"),
        ("timer", "ok"),
        ("signal", "ok"),
        ("value", "ok"),
        ("outcome", "ok"),
    ]
    failed, retried = tl.rows[1], tl.rows[2]
    assert (failed.attempt, retried.attempt) == (1, 2) and failed.position == retried.position
    assert failed.error is not None and "first try of a fails" in failed.error
    assert retried.start >= failed.end  # the retry starts when it was due, not before
    assert tl.rows[3].label == HOSTILE and tl.rows[3].detail == HOSTILE
    timer, signal = tl.rows[4], tl.rows[5]
    assert timer.deadline is not None and timer.end is not None and timer.end >= timer.deadline
    assert signal.detail == {"by": HOSTILE} and signal.label == "approve"
    assert tl.rows[-1].detail["note"] == HOSTILE and tl.finished
    assert all(0 <= r.left <= 100 and 0 < r.width <= 100.001 for r in tl.rows)
    assert [r.left for r in tl.rows] == sorted(r.left for r in tl.rows)


def test_a_run_in_flight_keeps_its_wait_open(db: Path) -> None:
    with open_copy(db) as copy:
        run, events = copy.run("r2"), copy.history("r2")
    tl = timeline(run, events, now=max(e.created_at for e in events) + 10)
    wait = tl.rows[-1]
    assert not tl.finished and wait.kind == "signal" and wait.end is None
    assert wait.state == "open" and wait.left + wait.width == pytest.approx(100, abs=0.01)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _render(db: Path, run_id: str) -> str:
    with open_copy(db) as copy:
        run, events = copy.run(run_id), copy.history(run_id)
    return (
        environment()
        .get_template("run.html")
        .render(
            tenant="t1",
            source=BackupSource("t1", db, f"stopped: {HOSTILE}"),
            run=run,
            tl=timeline(run, events),
            events=len(events),
            fork_at=run.updated_at,
            fork_name="t1-fork",
            csrf="c" * 64,
        )
    )


def test_agent_content_is_text_never_markup(db: Path) -> None:
    page = _render(db, "r1")
    parser = _Tags()
    parser.feed(page)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"src": "/static/console.js", "defer": None}]
    assert not [t for t, _ in parser.tags if t in ("img", "iframe", "object", "embed", "base")]
    assert not [a for _, attrs in parser.tags for a in attrs if a.startswith("on")]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page  # shown, as text
    assert " style=" not in page  # the CSP allows no inline style either


def test_the_token_gate() -> None:
    token = "t0ken-for-the-test"
    app = build_app(connect(load_settings(None)), token, SourceCache(Path("/nonexistent")))
    with TestClient(app, base_url="http://127.0.0.1:8081") as http:
        denied = http.get("/static/console.css")
        assert denied.status_code == 401 and "content-security-policy" in denied.headers
        assert http.get("/static/console.css", params={"token": "wrong"}).status_code == 401
        ok = http.get("/static/console.css", params={"token": token})
        assert ok.status_code == 200 and ok.headers["x-content-type-options"] == "nosniff"
        cookie = ok.headers["set-cookie"]
        assert f"{COOKIE}={token}" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        csp = ok.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert http.get("/static/console.js").status_code == 200  # the cookie from now on
        # State-changing requests: the cookie is not enough.
        form = {"name": "approve", "payload": "{}"}
        post = "/t/t1/runs/r1/signal"
        assert http.post(post, data=form).status_code == 403  # no CSRF value
        cross = {**form, "csrf": csrf_value(token)}
        elsewhere = {"origin": "http://127.0.0.1:9999"}
        assert http.post(post, data=cross, headers=elsewhere).status_code == 403
        site = {"sec-fetch-site": "same-site"}  # another port of the same host
        assert http.post(post, data=cross, headers=site).status_code == 403
        hidden = {"origin": "null", "sec-fetch-site": "cross-site"}
        assert http.post(post, data=cross, headers=hidden).status_code == 403
        assert http.post(post, data={**form, "csrf": "0" * 64}).status_code == 403


def test_the_runs_page_pages(db: Path) -> None:
    source = BackupSource("t1", db, "stopped")
    first = source.runs(limit=1)
    assert [r.id for r in first.runs] == ["r2"] and first.next_cursor
    page = (
        environment()
        .get_template("tenant.html")
        .render(
            tenant="t1",
            source=source,
            page=first,
            status="",
            workflow="",
            statuses=["waiting"],
            paged=False,
            csrf="c",
        )
    )
    assert f'cursor={first.next_cursor}"' in page and ">older</a>" in page
    older = source.runs(limit=1, cursor=first.next_cursor)
    assert [r.id for r in older.runs] == ["r1"] and older.next_cursor is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fork", "same", "same"], "a fork needs a new name"),
        (["fork", "src", "Bad_Name"], "invalid tenant name"),
        (["fork", "src", "new", "--at", "yesterday"], "invalid timestamp"),
        (["fork", "src", "new", "--at", "2026-01-01T00:00:00"], "has no time zone"),
        (["console", "--port", "70000"], "--port"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    from .fleet_support import cli

    r = cli(capsys, *args)
    assert r.code == 2, r
    assert expected in r.err and "Traceback" not in r.err


def test_a_port_in_use_is_an_error_before_the_link(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from .fleet_support import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = cli(capsys, "console", "--port", str(taken.getsockname()[1]))
    assert r.code == 2 and r.out == "", r
    assert r.err.startswith("fleet: cannot listen on 127.0.0.1:") and len(r.err.splitlines()) == 1
