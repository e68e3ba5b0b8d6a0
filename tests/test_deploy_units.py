"""The parts of templates and `fleet deploy` that need no engine: references, labels, the
replay report, the error line a failed version is quoted by."""

from __future__ import annotations

import json

import pytest

from fleet.core import names
from fleet.core.errors import CodeIncompatible, FleetError, InvalidArgument
from fleet.core.hosting import Tenant, TenantSpec
from fleet.core.templates import parse_ref
from fleet.ops.deploy import _why
from fleet.ops.replay_check import _parse


def test_template_refs() -> None:
    assert parse_ref("hello") == ("hello", None)
    assert parse_ref("hello:3f2a9c1d0b7e") == ("hello", "3f2a9c1d0b7e")
    assert names.template_ref("hello", "3f2a") == "litefleet/tmpl-hello:3f2a"
    for bad in ("Hello", "hello:", "hello:a-b", "-x", "a" * 64, "hello:x:y", "../x"):
        with pytest.raises(InvalidArgument):
            parse_ref(bad)


def test_a_tenant_s_template_is_on_its_container() -> None:
    spec = TenantSpec(tenant="t1", image="litefleet/tmpl-hello:v1", token="x")
    assert names.LABEL_TEMPLATE not in spec.engine_labels()
    spec = TenantSpec(
        tenant="t1", image="img", token="x", template="hello", template_version="3f2a"
    )
    labels = spec.engine_labels()
    assert labels[names.LABEL_TEMPLATE] == "hello"
    assert labels[names.LABEL_TEMPLATE_VERSION] == "3f2a"


def _tenant() -> Tenant:
    return Tenant("t1", "local", "running", "healthy", 0.0, {}, None, None, "app", "sqlite", "i")


def test_the_replay_report() -> None:
    rows = [
        {"run": "r1", "workflow": "triage", "ok": False, "position": 0,
         "recorded": "step 'fetch'", "called": "step 'summarize'", "error": "non-determinism"},
        {"run": "r2", "workflow": "triage", "ok": True, "extra": "ignored"},
    ]  # fmt: skip
    got = _parse(_tenant(), 9, json.dumps(rows), "")
    assert [(r.run, r.ok, r.position) for r in got] == [("r1", False, 0), ("r2", True, None)]
    assert _parse(_tenant(), 0, "[]", "") == []
    with pytest.raises(InvalidArgument, match=r"app '/app/x\.py' failed to import"):
        _parse(_tenant(), 2, "", "agent-runtime: error: app '/app/x.py' failed to import\n")
    with pytest.raises(FleetError, match="printed no report"):
        _parse(_tenant(), 0, "hello from import\n[]", "")
    with pytest.raises(FleetError, match="exit status 137"):
        _parse(_tenant(), 137, "", "")


def test_the_error_line_of_a_version_that_does_not_start() -> None:
    logs = (
        "litefleet-lease: lease of t1 taken\n"
        "agent-runtime: error: app '/app/agents.py' failed to import: SystemExit: no key\n"
        "Error: exit status 2\nlitefleet-lease: lease of t1 released\n"
    )
    assert (
        _why(logs)
        == "agent-runtime: error: app '/app/agents.py' failed to import: SystemExit: no key"
    )
    assert _why("a\nSomeError: boom\nbye\n") == "SomeError: boom"
    assert _why("a\nb\n") == "b" and _why("") is None


def test_exit_code_9() -> None:
    assert CodeIncompatible("x").exit_code == 9
