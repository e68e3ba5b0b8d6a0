"""The web console in a real browser (Debian's chromium, headless, through chromium-driver)
with real tenants on a real Docker engine: pages, the token, hostile run content, live
updates, a signal sent from a run's page, a stopped tenant read from its backup, fork and
download."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from agent_runtime import open_copy
from fleet.storage.embedded import EmbeddedStore as ObjectStore
from tests.docker_fixtures import TEST_BUCKET

from . import browser_support
from .fleet_support import FLEET, Result, cli_env, fleet, free_port

pytestmark = pytest.mark.docker

Fleet = Callable[..., Result]
HOSTILE = '<script>alert("pwned")</script><img src=x onerror="alert(1)">'


@pytest.fixture
def env(tenant_image: str, object_store: ObjectStore) -> dict[str, str]:
    return cli_env(tenant_image, TEST_BUCKET)


@pytest.fixture
def run(env: dict[str, str]) -> Iterator[Fleet]:
    made: list[str] = []

    def call(*args: str) -> Result:
        if args[0] == "up":
            made.append(args[1])
        r = fleet(*args, env=env)
        assert r.code == 0, f"fleet {' '.join(args)}: exit {r.code}: {r.err}"
        return r

    yield call
    for name in made:
        fleet("rm", name, "--purge", "--yes", env=env)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = browser_support.missing()
    if why:
        pytest.skip(why)
    with browser_support.chromium() as driver:
        yield driver


@pytest.fixture
def link(env: dict[str, str]) -> Iterator[str]:
    with browser_support.console(FLEET, free_port(), env) as url:
        yield url


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _base(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.scheme}://{parts.netloc}"


def _wait(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _shows(driver: Any, css: str, text: str, timeout: float = 30) -> None:
    """Wait until the element ``css`` reads ``text`` (the page may be loading or updating)."""
    from selenium.common.exceptions import WebDriverException

    def check() -> bool:
        try:
            return _text(driver, css) == text
        except WebDriverException:
            return False

    try:
        _wait(check, timeout, f"{css} to read {text!r}")
    except AssertionError:
        page = _text(driver, "body")
        raise AssertionError(f"{css} never read {text!r}; the page: {page}") from None


def _reads(read: Callable[[], Any], want: Any, timeout: float = 30, what: str = "") -> None:
    """Wait until ``read()`` returns ``want``. The page may be mid-navigation after a submit,
    or the live update may have replaced an element (a stale reference): read again."""
    from selenium.common.exceptions import WebDriverException

    last: Any = None

    def check() -> bool:
        nonlocal last
        try:
            last = read()
        except WebDriverException:
            return False
        return bool(last == want)

    try:
        _wait(check, timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}: last read {last!r}, wanted {want!r}") from None


def _click(driver: Any, css: str, timeout: float = 30) -> None:
    """Click the element ``css``, looking it up again if the page replaced it meanwhile."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except WebDriverException:
            return False
        return True

    _wait(attempt, timeout, f"a click on {css}")


def _runs(run: Fleet, tenant: str) -> dict[str, str]:
    return {r["id"]: r["status"] for r in json.loads(run("runs", tenant, "--json").out)}


def _no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def test_tenants_runs_and_a_signal_from_the_run_page(run: Fleet, browser: Any, link: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    t, case = _name("cons"), _name("case")
    run("up", t, "--label", f"case={case}")
    run("run", t, "echo", "-i", json.dumps({"message": HOSTILE}), "--id", "hostile", "--wait")
    run("run", t, "research", "-i", '{"topic": "consoles"}', "--id", "asks")
    base = _base(link)

    browser.get(base + "/")
    assert "401" in _text(browser, "body")
    browser.get(link)
    assert "token=" not in browser.current_url  # the script dropped it; the cookie stays
    browser.find_element(By.NAME, "label").send_keys(f"case={case}")
    _click(browser, "form.filters button")

    def tenants() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#tenants tbody tr")
        return [r.find_element(By.TAG_NAME, "a").text for r in rows]

    _reads(tenants, [t], what="the tenants with the label")
    row = "#tenants tbody tr:first-child"
    _reads(lambda: f"case={case}" in _text(browser, row), True, what="the row's label")
    _reads(lambda: "running" in _text(browser, row), True, what="the row's state")

    _click(browser, f"{row} a")
    _reads(lambda: "waiting" in _text(browser, "#runs"), True, what="the research run to wait")
    Select(browser.find_element(By.NAME, "status")).select_by_value("waiting")
    _click(browser, "form.filters button")

    def run_ids() -> list[str]:
        links = browser.find_elements(By.CSS_SELECTOR, "#runs tbody td:first-child a")
        return [a.text for a in links]

    _reads(run_ids, ["asks"], what="the waiting runs")

    # Hostile content is shown as text: nothing runs, no element is injected.
    browser.get(f"{base}/t/{t}/runs/hostile")
    _no_alert(browser)
    assert json.dumps(HOSTILE) in _text(browser, "pre.json")  # as text, JSON-quoted
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script") == []

    # The waiting run: its timeline ends in an open signal wait; a signal from the page ends it.
    browser.get(f"{base}/t/{t}/runs/asks")
    # (the timeline refreshes itself every second while the run waits: read it again if stale)
    _reads(lambda: "approve" in _text(browser, "#timeline tr.signal.open"), True, what="the wait")
    payload = browser.find_element(By.NAME, "payload")
    payload.clear()
    payload.send_keys('{"approved": true, "by": "the console"}')
    browser.find_element(By.CSS_SELECTOR, "#signal button").click()
    _shows(browser, "#status", "completed")
    assert '"by": "the console"' in _text(browser, "#timeline tr.signal")  # its payload
    assert '"approved": true' in _text(browser, "#run-result")
    assert _runs(run, t)["asks"] == "completed"


def test_a_run_in_flight_updates_itself(run: Fleet, browser: Any, link: str) -> None:
    t = _name("live")
    run("up", t)
    run("run", t, "steps", "-i", '{"n": 4, "sleep": 1.5}', "--id", "slow")
    browser.get(link)
    browser.get(f"{_base(link)}/t/{t}/runs/slow")
    browser.execute_script("window.stillThisPage = true")
    _shows(browser, "#status", "completed", 60)
    assert browser.execute_script("return window.stillThisPage === true")  # no reload
    assert _text(browser, "#timeline").count("noop") == 4


def test_a_stopped_tenant_from_its_backup_then_fork_and_download(
    run: Fleet,
    browser: Any,
    link: str,
    docker_client: Any,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    t, new = _name("stop"), _name("fork")
    run("up", t)
    run("run", t, "echo", "-i", '{"message": "kept"}', "--id", "kept", "--wait")
    run("run", t, "research", "-i", '{"topic": "forks"}', "--id", "asks")
    _wait(lambda: _runs(run, t).get("asks") == "waiting", what="the research run to wait")
    run("down", t)
    container = docker_client.containers.get(f"litefleet-{t}")
    stopped_at = container.attrs["State"]["FinishedAt"]

    browser.get(link)
    browser.get(f"{_base(link)}/t/{t}")
    assert "shown from its backup" in _text(browser, "#source")
    assert {"kept", "asks"} <= set(_text(browser, "#runs").split())
    browser.get(f"{_base(link)}/t/{t}/runs/asks")
    assert "approve" in _text(browser, "#timeline")
    assert browser.find_elements(By.ID, "signal") == []  # needs the tenant running
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["FinishedAt"] == stopped_at

    # Fork it at this run's point, from the run's page: NEW runs, with the waiting run.
    name = browser.find_element(By.CSS_SELECTOR, "form[action$='/fork'] input[name=new]")
    name.clear()
    name.send_keys(new)
    try:
        browser.find_element(By.CSS_SELECTOR, "form[action$='/fork'] button").click()
        _wait(lambda: browser.current_url.endswith(f"/t/{new}"), 120, "the fork")
        assert "running on" in _text(browser, "#source")
        assert _runs(run, new) == {"kept": "completed", "asks": "waiting"}
    finally:
        fleet("rm", new, "--purge", "--yes", env=env)

    # Download the database as the page's form posts it (the console's cookie and CSRF value).
    with httpx.Client(base_url=_base(link), trust_env=False, timeout=60) as http:
        http.get(link)  # sets the cookie
        page = http.get(f"/t/{t}").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        got = http.post(f"/t/{t}/download", data={"csrf": csrf, "at": ""})
    assert got.status_code == 200, got.text[:300]
    assert got.headers["content-disposition"] == f'attachment; filename="{t}.db"'
    copy = tmp_path / "download.db"
    copy.write_bytes(got.content)
    with open_copy(copy) as db:
        assert db.statuses() == {"kept": "completed", "asks": "waiting"}
