"""Pins the public API: changing it must be a decision, not an accident."""

import agent_runtime


def test_exports_are_pinned() -> None:
    assert sorted(agent_runtime.__all__) == [
        "AgentRuntimeError",
        "DatabaseCopy",
        "Event",
        "EventKind",
        "InvalidDuration",
        "InvalidInput",
        "NonDeterminismError",
        "RetryPolicy",
        "Run",
        "RunNotFound",
        "RunPage",
        "RunStatus",
        "Runtime",
        "SignalBufferFull",
        "SignalTimeout",
        "Step",
        "StepFailed",
        "StepTimeout",
        "StorageError",
        "UnstorableValue",
        "Workflow",
        "WorkflowNotFound",
        "__version__",
        "now",
        "open_copy",
        "random",
        "sleep",
        "step",
        "uuid4",
        "wait_for_signal",
        "workflow",
    ]
    for name in agent_runtime.__all__:
        assert hasattr(agent_runtime, name), name


def test_public_names_do_not_leak_internals() -> None:
    public = {n for n in dir(agent_runtime) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agent_runtime, n)).__name__ == "module"}
    assert public - modules - {"examples"} == set(agent_runtime.__all__) - {"__version__"}
