"""Property-based fuzzing of the HTTP API (hypothesis): arbitrary bodies, ids, names and
query strings, poisoned values included. Properties: no request answers 5xx, and after
each batch every stored run, its events and every list page still answer 200.

Schemathesis would need an OpenAPI document the API does not have; hypothesis drives the
few endpoints directly."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from agent_runtime import Runtime, wait_for_signal, workflow
from agent_runtime._http import build_app
from tests.pg_fixtures import pg_dsn, pg_server  # noqa: F401  (fixtures)
from tests.test_poison import assert_all_readable


@workflow
async def mirror(**value: Any) -> Any:
    """Returns its input: whatever got in comes back out through the result."""
    return value


@workflow
async def relay(name: str = "go") -> Any:
    """Returns the payload of the signal it waits for."""
    return await wait_for_signal(name if isinstance(name, str) else "go")


APP = [mirror, relay]

POISON_TEXT = ["\ud800", "\udfff", "a\udc00b", "\x00", "\u2028", "..", "a/b", "\U0001f600"]
texts = st.one_of(st.text(max_size=20), st.sampled_from(POISON_TEXT))
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -0.0]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)


def deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = {"k": v} if n % 2 else [v]
    return v


any_value = st.one_of(values, st.integers(60, 70).map(deep), st.integers(955, 970).map(deep))


def segment(text: str) -> str:
    """A URL path segment holding ``text`` byte for byte (lone surrogates as their
    would-be UTF-8 bytes, as a hostile client sends them)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="") or "x"


def encode(value: Any) -> bytes:
    """JSON text the way a careless client writes it: NaN, Infinity and lone surrogates
    (as \\u escapes) included; a value nested past Python's limit as raw brackets."""
    try:
        return json.dumps(value).encode()
    except RecursionError:
        return b"[" * 2000 + b"]" * 2000


ids = st.one_of(
    st.none(), texts, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,10}", fullmatch=True)
)
requests = st.one_of(
    st.builds(
        lambda wf, input, run_id: (
            "POST",
            "/v1/runs",
            {"workflow": wf, "input": input, **({"id": run_id} if run_id is not None else {})},
        ),
        st.sampled_from(["mirror", "relay", "nope", "\ud800"]),
        st.one_of(st.dictionaries(st.sampled_from(["a", "b", "name"]), any_value), any_value),
        ids,
    ),
    st.builds(
        lambda run_id, name, payload: ("POST", f"/v1/runs/{run_id}/signals/{name}", payload),
        st.one_of(st.sampled_from(["r0", "r1"]), texts.map(segment)),
        st.one_of(st.just("go"), texts.map(segment)),
        any_value,
    ),
    st.builds(
        lambda run_id, tail: ("GET", f"/v1/runs/{run_id}{tail}", None),
        texts.map(segment),
        st.sampled_from(["", "/events"]),
    ),
    st.builds(
        lambda run_id: ("POST", f"/v1/runs/{run_id}/cancel", None),
        texts.map(segment),
    ),
    st.builds(
        lambda params: ("GET", "/v1/runs?" + "&".join(f"{k}={segment(v)}" for k, v in params), ""),
        st.lists(st.tuples(st.sampled_from(["status", "workflow", "limit", "cursor"]), texts)),
    ),
)


def send(client: TestClient, method: str, path: str, body: Any) -> int:
    if method == "GET":
        return client.get(path).status_code
    content = b"" if body is None else encode(body)
    r = client.post(path, content=content, headers={"Content-Type": "application/json"})
    return r.status_code


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    db = str(tmp_path / "f.db") if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    with TestClient(build_app(Runtime(db=db, app=APP)), raise_server_exceptions=False) as c:
        for i in range(2):
            c.post("/v1/runs", json={"workflow": "relay", "id": f"r{i}"})
        yield c


def test_fuzzed_requests_never_answer_5xx_nor_poison_reads(client: TestClient) -> None:
    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(requests, min_size=1, max_size=5))
    def batch(calls: list[tuple[str, str, Any]]) -> None:
        for method, path, body in calls:
            status = send(client, method, path, body)
            assert status < 500, (method, path, body)
        time.sleep(0.01)  # let submitted runs record their results
        assert_all_readable(client)

    batch()
