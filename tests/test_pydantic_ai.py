"""PydanticAI agents on agent_runtime (agent_runtime.integrations.pydantic_ai), offline: every
model is a FunctionModel, every tool local, the MCP server a stdio subprocess.

Cases carried over from PydanticAI's own durable_exec suites (tests/test_dbos.py and
tests/test_temporal.py in pydantic/pydantic-ai) are marked "from PydanticAI's ..." below.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_ai import (
    Agent,
    CancellationToken,
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
)
from pydantic_ai.exceptions import ModelRetry, ToolFailed, UserError
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset
from starlette.testclient import TestClient

from agent_runtime import RetryPolicy, Runtime, StepFailed, wait_for_signal, workflow
from agent_runtime._http import build_app
from agent_runtime.integrations.pydantic_ai import DurableAgent
from tests import pai_app
from tests.pai_app import calls
from tests.test_crash import Server, check_unchanged, recorded_steps

REPO = Path(__file__).resolve().parents[1]

RESEARCH_STEPS = [
    ("value_recorded", "researcher__run_id"),
    ("step_completed", "researcher__model.request"),
    ("step_completed", "researcher__function_toolset__<agent>.call_tool:lookup"),
    ("step_completed", "researcher__model.request"),
    ("step_completed", "researcher__function_toolset__<agent>.call_tool:slow_fetch"),
    ("step_completed", "researcher__model.request"),
]
RESEARCH_REPORT = {
    "topic": "sqlite",
    "findings": ["sqlite is an embedded database", "fetched https://example.org/a"],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test agents count their side effects (see tests/pai_app.py)."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.setenv("PAI_TEST_DIR", str(d))
    return d


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "pai.db")
    return str(request.getfixturevalue("pg_dsn"))


def steps_of(history: list[Any]) -> list[tuple[str, str]]:
    return [(e.kind, e.name) for e in history if e.position is not None]


def text_turns(*replies: str | ToolCallPart) -> FunctionModel:
    """A model that answers turn n with replies[n] (a text or a tool call)."""

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        r = replies[min(turn, len(replies) - 1)]
        return ModelResponse(parts=[TextPart(r) if isinstance(r, str) else r])

    return FunctionModel(reply)


async def run_workflow(
    db: str, wf: Any, input: dict[str, Any] | None = None, timeout: float = 20
) -> tuple[Any, list[Any]]:
    """Run one workflow to its end on a fresh runtime: (the run, its history)."""
    async with Runtime(db=db, app=[wf]) as rt:
        run = await rt.submit(wf.name, input or {})
        done = await rt.wait(run.id, timeout=timeout)
        return done, await rt.history(run.id)


# -- the agent of the issue: two tools, then a structured answer


@pytest.mark.anyio
async def test_two_tools_then_structured_output(db: str, work: Path) -> None:
    (work / "release").touch()
    run, history = await run_workflow(db, pai_app.pai_research)
    assert run.status == "completed", run.error
    assert run.result["report"] == RESEARCH_REPORT
    assert steps_of(history) == RESEARCH_STEPS
    run_id = history[1].data["value"]
    assert run.result["run_id"] == run_id
    assert calls() == [
        "model 0",
        "lookup",
        "model 1",
        "slow_fetch start",
        "slow_fetch done",
        "model 2",
    ]


replayed: list[list[tuple[Any, ...]]] = []


def message_digest(messages: list[ModelMessage]) -> list[tuple[Any, ...]]:
    """What a replay must reproduce (timestamps of workflow-side requests are fresh)."""
    return [
        (
            m.kind,
            m.run_id,
            m.conversation_id,
            p.part_kind,
            str(getattr(p, "content", "")),
            getattr(p, "tool_call_id", None),
        )
        for m in messages
        for p in m.parts
    ]


@workflow
async def research_then_wait() -> dict[str, Any]:
    result = await pai_app.durable_researcher.run("What is SQLite?")
    replayed.append(message_digest(result.all_messages()))
    await wait_for_signal("go")
    return result.output.model_dump()


@pytest.mark.anyio
async def test_a_replay_repeats_no_model_request_or_tool_call(tmp_path: Path, work: Path) -> None:
    """The run suspends after the agent; the signal re-executes it from the top."""
    (work / "release").touch()
    replayed.clear()
    async with Runtime(db=str(tmp_path / "r.db"), app=[research_then_wait]) as rt:
        run = await rt.submit("research_then_wait")
        deadline = time.monotonic() + 10
        while (await rt.get(run.id)).status != "waiting" and time.monotonic() < deadline:
            await _pause()
        before = calls()
        await rt.signal(run.id, "go")
        assert await rt.result(run.id, timeout=10) == RESEARCH_REPORT
    assert calls() == before  # nothing ran twice
    assert len(replayed) == 2 and replayed[0] == replayed[1]  # same ids, same messages


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_cancelling_a_run_during_a_tool_call_leaves_it_cancelled(
    tmp_path: Path, work: Path
) -> None:
    async with Runtime(db=str(tmp_path / "c.db"), app=pai_app) as rt:
        run = await rt.submit("pai_research")
        deadline = time.monotonic() + 10
        while "slow_fetch start" not in calls():
            assert time.monotonic() < deadline
            await _pause()
        await rt.cancel(run.id)
        (work / "release").touch()
        await _pause()
        assert (await rt.wait(run.id, timeout=5)).status == "cancelled"
        kinds = [e.kind for e in await rt.history(run.id)]
    assert "run_failed" not in kinds and "model 2" not in calls()


# -- retries


def flaky_events(client: TestClient, run_id: str) -> list[tuple[str, int]]:
    events = client.get(f"/v1/runs/{run_id}/events").json()["events"]
    name = "flaky_agent__function_toolset__<agent>.call_tool:flaky"
    return [(e["kind"], e["attempt"]) for e in events if e["name"] == name]


def run_flaky(db: str, work: Path, failures: int) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    (work / "failures").write_text(str(failures))
    with TestClient(build_app(Runtime(db=db, app=pai_app))) as client:
        run_id = client.post("/v1/runs", json={"workflow": "pai_flaky"}).json()["id"]
        deadline = time.monotonic() + 20
        while (run := client.get(f"/v1/runs/{run_id}").json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline, run
            time.sleep(0.02)
        return run, flaky_events(client, run_id)


def test_a_failing_tool_is_retried_per_its_policy_and_shows_every_attempt(
    db: str, work: Path
) -> None:
    run, attempts = run_flaky(db, work, failures=2)
    assert run["status"] == "completed" and run["result"] == "done"
    assert attempts == [
        ("step_attempt_failed", 1),
        ("step_attempt_failed", 2),
        ("step_completed", 3),
    ]
    assert calls().count("flaky") == 3


def test_a_tool_failing_past_its_policy_fails_the_run(db: str, work: Path) -> None:
    run, attempts = run_flaky(db, work, failures=10)
    assert run["status"] == "failed"
    assert run["error"]["type"] == "StepFailed"
    assert "after 3 attempt(s): ConnectionError: upstream unavailable" in run["error"]["message"]
    assert attempts == [
        ("step_attempt_failed", 1),
        ("step_attempt_failed", 2),
        ("step_failed", 3),
    ]
    assert calls().count("flaky") == 3


# -- kill -9 while the second tool call is in progress


def wait_for(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_kill_during_the_second_tool_call_then_restart(db: str, work: Path, tmp_path: Path) -> None:
    server = Server(
        db,
        tmp_path / "server.log",
        env={"PAI_TEST_DIR": str(work)},
        app=str(REPO / "tests" / "pai_app.py"),
    )
    server.start()
    try:
        r = httpx.post(f"{server.url}/v1/runs", json={"workflow": "pai_research", "id": "pai-1"})
        assert r.status_code == 201, r.text
        wait_for(lambda: "slow_fetch start" in calls(), "the second tool call")
        server.kill()
        before = recorded_steps(db)
        assert sorted(pos for (_, pos) in before) == [1, 2, 3]  # model, lookup, model
        (work / "release").touch()
        server.start()

        def finished() -> bool:
            status = httpx.get(f"{server.url}/v1/runs/pai-1").json()["status"]
            return bool(status in ("completed", "failed"))

        wait_for(finished, "the run to finish")
        run = httpx.get(f"{server.url}/v1/runs/pai-1").json()
        events = httpx.get(f"{server.url}/v1/runs/pai-1/events").json()["events"]
    finally:
        assert server.stop() == 0
    assert run["status"] == "completed", run["error"]
    assert run["result"]["report"] == RESEARCH_REPORT
    check_unchanged(before, recorded_steps(db))
    assert [(e["kind"], e["name"]) for e in events if e["position"] is not None] == RESEARCH_STEPS
    made = calls()
    # Recorded before the kill: ran once. In progress at the kill: ran again.
    assert made.count("model 0") == made.count("model 1") == made.count("lookup") == 1
    assert made.count("slow_fetch start") == 2 and made.count("slow_fetch done") == 1
    assert made.count("model 2") == 1


# -- control flow crosses the step boundary as data (from PydanticAI's DBOS/Temporal suites)


@pytest.mark.anyio
async def test_model_retry_from_a_tool_is_recorded_not_retried_by_the_engine(
    tmp_path: Path,
) -> None:
    """From PydanticAI's test_dbos_mcp_model_retry_crosses_step_without_engine_retries."""
    tries: list[str] = []
    agent = Agent(
        text_turns(
            ToolCallPart("weather", {"city": "CDMX"}),
            ToolCallPart("weather", {"city": "Mexico City"}),
            "sunny",
        ),
        name="retrying",
    )

    @agent.tool_plain
    def weather(city: str) -> str:
        tries.append(city)
        if city == "CDMX":
            raise ModelRetry("use the full city name")
        return "sunny"

    durable = DurableAgent(agent, tool_retry=RetryPolicy(max_attempts=5, initial_interval=0))

    @workflow
    async def ask() -> str:
        return (await durable.run("weather?")).output

    run, history = await run_workflow(str(tmp_path / "m.db"), ask)
    assert run.result == "sunny" and tries == ["CDMX", "Mexico City"]
    tool_events = [e for e in history if e.name and "call_tool:weather" in e.name]
    assert [(e.kind, e.attempt) for e in tool_events] == [("step_completed", 1)] * 2
    assert tool_events[0].data["result"]["kind"] == "model_retry"


@pytest.mark.anyio
async def test_tool_failed_reaches_the_model_as_a_failed_return(tmp_path: Path) -> None:
    """From PydanticAI's test_dbos_agent_with_tool_failed."""
    agent = Agent(text_turns(ToolCallPart("failing_tool", {}), "gave up"), name="failing")

    @agent.tool_plain
    def failing_tool() -> str:
        raise ToolFailed("Disk full")

    durable = DurableAgent(agent)

    @workflow
    async def ask() -> list[Any]:
        result = await durable.run("Call the failing tool")
        return [
            [p.tool_name, p.content, p.outcome]
            for m in result.all_messages()
            for p in m.parts
            if isinstance(p, ToolReturnPart)
        ]

    run, _ = await run_workflow(str(tmp_path / "f.db"), ask)
    assert run.result == [["failing_tool", "Disk full", "failed"]]


@pytest.mark.anyio
async def test_approval_through_a_signal(tmp_path: Path) -> None:
    """From PydanticAI's test_dbos_agent_with_hitl_tool: the approval arrives as a signal."""
    deleted: list[str] = []
    agent = Agent(
        text_turns(ToolCallPart("delete_file", {"path": ".env"}, tool_call_id="c1"), "deleted"),
        name="hitl",
        output_type=[str, DeferredToolRequests],
    )

    @agent.tool_plain(requires_approval=True)
    def delete_file(path: str) -> bool:
        deleted.append(path)
        return True

    durable = DurableAgent(agent)

    @workflow
    async def cleanup() -> str:
        result = await durable.run("Delete `.env`")
        while isinstance(result.output, DeferredToolRequests):
            ids = [call.tool_call_id for call in result.output.approvals]
            decision = await wait_for_signal("approve")
            results = DeferredToolResults(approvals={i: bool(decision.get(i)) for i in ids})
            result = await durable.run(
                message_history=result.all_messages(), deferred_tool_results=results
            )
        return result.output

    async with Runtime(db=str(tmp_path / "h.db"), app=[cleanup]) as rt:
        run = await rt.submit("cleanup")
        deadline = time.monotonic() + 10
        while (await rt.get(run.id)).status != "waiting":
            assert time.monotonic() < deadline
            await _pause()
        assert deleted == []
        await rt.signal(run.id, "approve", {"c1": True})
        assert await rt.result(run.id, timeout=10) == "deleted"
        names = [e.name for e in await rt.history(run.id) if e.position is not None]
    assert deleted == [".env"]
    assert names.count("hitl__function_toolset__<agent>.call_tool:delete_file") == 1
    assert names.count("hitl__run_id") == 2  # two agent runs, each with its own id


# -- what the wrapper checks (from PydanticAI's DBOS/Temporal suites)


def test_an_agent_needs_a_name() -> None:
    """From test_agent_without_name / test_durability_requires_agent_name."""
    with pytest.raises(UserError, match="DurableAgent needs a name"):
        DurableAgent(Agent(text_turns("hi")))
    assert DurableAgent(Agent(text_turns("hi")), name="named").name == "named"


def test_a_toolset_without_id_fails_at_construction() -> None:
    """From test_toolset_without_id."""
    agent = Agent(text_turns("hi"), name="ids", toolsets=[FunctionToolset([lambda: 1])])
    with pytest.raises(UserError, match="unique `id`"):
        DurableAgent(agent)


@pytest.mark.anyio
async def test_outside_a_workflow_it_is_the_plain_agent() -> None:
    """From test_durability_outside_workflow_is_transparent."""
    agent = Agent(text_turns(ToolCallPart("double", {"x": 2}), "4"), name="plain")

    @agent.tool_plain
    def double(x: int) -> int:
        return 2 * x

    result = await DurableAgent(agent).run("2*2?", event_stream_handler=None)
    assert result.output == "4"


@pytest.mark.anyio
async def test_explicit_run_id_is_kept(tmp_path: Path) -> None:
    """From test_dbos_agent_explicit_run_id."""
    durable = DurableAgent(Agent(text_turns("ok"), name="with_id"))

    @workflow
    async def ask() -> list[str | None]:
        result = await durable.run("Hello", run_id="run-from-workflow")
        return [result.run_id, *(m.run_id for m in result.all_messages())]

    run, history = await run_workflow(str(tmp_path / "i.db"), ask)
    assert run.result == ["run-from-workflow"] * 3
    assert [e.kind for e in history if e.position is not None] == ["step_completed"]


@pytest.mark.anyio
async def test_deps_need_not_be_serialisable(tmp_path: Path) -> None:
    """Unlike on DBOS/Temporal (test_*_with_unserializable_deps_type): steps run in-process."""
    agent = Agent(
        text_turns(ToolCallPart("locked", {}), "done"), name="deps", deps_type=threading.Lock
    )

    @agent.tool
    def locked(ctx: RunContext[threading.Lock]) -> str:
        with ctx.deps:
            return "held"

    durable = DurableAgent(agent)

    @workflow
    async def ask() -> str:
        return (await durable.run("go", deps=threading.Lock())).output

    run, _ = await run_workflow(str(tmp_path / "d.db"), ask)
    assert run.status == "completed" and run.result == "done"


@pytest.mark.anyio
async def test_two_agents_in_one_workflow_have_their_own_step_names(tmp_path: Path) -> None:
    """From test_multiple_agents."""
    first = DurableAgent(Agent(text_turns("one"), name="first"))
    second = DurableAgent(Agent(text_turns("two"), name="second"))

    @workflow
    async def both() -> list[str]:
        return [(await first.run("a")).output, (await second.run("b")).output]

    run, history = await run_workflow(str(tmp_path / "two.db"), both)
    assert run.result == ["one", "two"]
    assert [n for _, n in steps_of(history)] == [
        "first__run_id",
        "first__model.request",
        "second__run_id",
        "second__model.request",
    ]


def _handler(*_: Any) -> None:
    pass


REFUSED = {
    "event_stream_handler": ({"event_stream_handler": _handler}, "event_stream_handler"),
    "timeout": ({"timeout": 5.0}, "timeout= is not supported"),
    "cancellation_token": ({"cancellation_token": CancellationToken()}, "cancellation_token"),
    "model instance": ({"model": FunctionModel(lambda m, i: ModelResponse([]))}, "model name"),
    "runtime toolset": (
        {"toolsets": [FunctionToolset([lambda: 1], id="late")]},
        "cannot be added at runtime",
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("what", sorted(REFUSED))
async def test_what_cannot_be_recorded_is_refused_in_a_workflow(tmp_path: Path, what: str) -> None:
    """From test_dbos_durability_rejects_runtime_*_toolset and ..._rejects_cancellation_token."""
    kwargs, needle = REFUSED[what]
    model_calls: list[int] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        model_calls.append(1)
        return ModelResponse(parts=[TextPart("x")])

    durable = DurableAgent(Agent(FunctionModel(model), name="refusing"))

    @workflow
    async def ask() -> str:
        return (await durable.run("hi", **kwargs)).output

    run, _ = await run_workflow(str(tmp_path / "u.db"), ask)
    assert run.status == "failed"
    assert run.error["type"] == "pydantic_ai.exceptions.UserError"
    assert needle in run.error["message"]
    assert model_calls == []


@pytest.mark.parametrize("method", ["run_stream", "run_stream_events", "iter", "run_sync"])
def test_streaming_methods_say_they_are_not_supported(method: str) -> None:
    durable = DurableAgent(Agent(text_turns("x"), name="streams"))
    with pytest.raises(UserError, match="not supported"):
        getattr(durable, method)("hi")


@pytest.mark.anyio
async def test_a_result_json_cannot_hold_fails_the_step_without_retrying(tmp_path: Path) -> None:
    agent = Agent(text_turns(ToolCallPart("opaque", {}), "never"), name="opaque")
    made: list[int] = []

    @agent.tool_plain
    def opaque() -> Any:
        made.append(1)
        return threading.Lock()

    durable = DurableAgent(agent, tool_retry=RetryPolicy(max_attempts=4, initial_interval=0))

    @workflow
    async def ask() -> str:
        return (await durable.run("go")).output

    run, history = await run_workflow(str(tmp_path / "o.db"), ask)
    assert run.status == "failed" and made == [1]
    failed = [e for e in history if e.kind == "step_failed"]
    assert len(failed) == 1 and failed[0].attempt == 1
    assert failed[0].data["error"]["type"].endswith("UnrecordableResult")


@pytest.mark.anyio
async def test_a_model_request_that_fails_for_good_raises_step_failed(tmp_path: Path) -> None:
    from pydantic_ai.exceptions import ModelAuthenticationError

    attempts: list[int] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        attempts.append(1)
        raise ModelAuthenticationError("fn", "bad key")

    durable = DurableAgent(Agent(FunctionModel(model), name="rejected"))

    @workflow
    async def ask() -> str:
        try:
            return (await durable.run("hi")).output
        except StepFailed as exc:
            return f"{exc.step} {exc.attempts}"

    run, _ = await run_workflow(str(tmp_path / "e.db"), ask)
    assert run.result == "rejected__model.request 1"  # rejected requests are not sent again
    assert attempts == [1]


# -- dynamic and MCP toolsets


@pytest.mark.anyio
async def test_dynamic_toolset_tools_are_steps(tmp_path: Path) -> None:
    """From test_dynamic_toolset / test_durability_dynamic_toolset_in_workflow."""
    from pydantic_ai.toolsets import DynamicToolset

    def temperature(city: str) -> float:
        return 21.0

    weather = FunctionToolset([temperature], id="weather")
    agent = Agent(
        text_turns(ToolCallPart("temperature", {"city": "Paris"}), "21 degrees"),
        name="dynamic",
        toolsets=[DynamicToolset(lambda ctx: weather, id="by_context")],
    )
    durable = DurableAgent(agent)

    @workflow
    async def ask() -> str:
        return (await durable.run("temperature in Paris?")).output

    run, history = await run_workflow(str(tmp_path / "dyn.db"), ask)
    assert run.result == "21 degrees"
    names = [n for _, n in steps_of(history)]
    assert "dynamic__dynamic_toolset__by_context.call_tool:temperature" in names
    assert "dynamic__dynamic_toolset__by_context.get_tools" in names


@pytest.mark.anyio
async def test_mcp_tools_are_steps(tmp_path: Path, work: Path) -> None:
    """From test_durability_mcptoolset_in_workflow: a real MCP server over stdio."""
    from fastmcp.client.transports import PythonStdioTransport
    from pydantic_ai.mcp import MCPToolset

    server = PythonStdioTransport(
        str(REPO / "tests" / "pai_mcp_server.py"),
        python_cmd=sys.executable,
        env={"PAI_TEST_DIR": str(work)},
    )
    agent = Agent(
        text_turns(ToolCallPart("add", {"a": 2, "b": 3}), "5"),
        name="mcp_user",
        toolsets=[MCPToolset(server, id="calc")],
    )
    durable = DurableAgent(agent)

    @workflow
    async def ask() -> list[Any]:
        result = await durable.run("2+3?")
        returns = [
            p.content
            for m in result.all_messages()
            for p in m.parts
            if isinstance(p, ToolReturnPart)
        ]
        return [result.output, returns]

    run, history = await run_workflow(str(tmp_path / "mcp.db"), ask, timeout=60)
    assert run.status == "completed", run.error
    assert run.result[0] == "5" and "5" in str(run.result[1])
    names = [n for _, n in steps_of(history)]
    assert "mcp_user__mcp_server__calc.call_tool" in names
    assert "mcp_user__mcp_server__calc.get_tools" in names
    assert calls() == ["add 2 3"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests talk to loopback and local subprocesses only."""
    monkeypatch.delenv("AGENT_RUNTIME_LLM_BASE_URL", raising=False)
    yield


# -- the example app's research_pai


async def run_research(rt: Runtime, workflow_name: str, topic: str) -> Any:
    run = await rt.submit(workflow_name, {"topic": topic})
    deadline = time.monotonic() + 10
    while (await rt.get(run.id)).status != "waiting":
        assert time.monotonic() < deadline
        await _pause()
    await rt.signal(run.id, "approve", {"approved": True})
    return await rt.result(run.id, timeout=10), await rt.history(run.id)


@pytest.mark.anyio
async def test_research_pai_gives_what_research_gives(tmp_path: Path) -> None:
    import agent_runtime.examples as examples

    async with Runtime(db=str(tmp_path / "ex.db"), app=examples) as rt:
        plain, _ = await run_research(rt, "research", "durable agents on sqlite")
        pai, history = await run_research(rt, "research_pai", "durable agents on sqlite")
    assert pai == plain and len(pai["findings"]) == 3
    names = [n for _, n in steps_of(history)]
    for tool in ("search", "calculate", "summarize"):
        assert names.count(f"research_pai__function_toolset__<agent>.call_tool:{tool}") == 1
    assert names.count("research_pai__model.request") == 3  # plan, findings, report


class FakeOpenAI:
    """An OpenAI-compatible chat endpoint on loopback that answers every request with a text."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.requests: list[tuple[str | None, dict[str, Any]]] = []

        async def completions(request: Request) -> JSONResponse:
            self.requests.append((request.headers.get("authorization"), await request.json()))
            message = {"role": "assistant", "content": "Nothing to add."}
            return JSONResponse(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "local-model",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        import uvicorn

        from tests.test_crash import free_port

        self.port = free_port()
        app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        wait_for(lambda: self.server.started, "the fake endpoint")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.mark.anyio
async def test_research_pai_uses_the_configured_openai_compatible_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent_runtime.examples as examples
    from agent_runtime.examples import _research_pai

    with FakeOpenAI() as fake:
        monkeypatch.setenv("AGENT_RUNTIME_LLM_BASE_URL", f"http://127.0.0.1:{fake.port}/v1")
        monkeypatch.setenv("AGENT_RUNTIME_LLM_MODEL", "local-model")
        monkeypatch.setenv("AGENT_RUNTIME_LLM_API_KEY", "k-123")
        _research_pai.researcher.cache_clear()
        try:
            async with Runtime(db=str(tmp_path / "online.db"), app=examples) as rt:
                result, _ = await run_research(rt, "research_pai", "sqlite")
        finally:
            _research_pai.researcher.cache_clear()
    assert result["model"] == "openai-compatible:local-model"
    assert result["findings"] == [] and result["report"] == "Nothing to add."
    assert [auth for auth, _ in fake.requests] == ["Bearer k-123"] * 2
    first = fake.requests[0][1]
    assert first["model"] == "local-model"
    assert {t["function"]["name"] for t in first["tools"]} == {"search", "calculate", "summarize"}
