"""The runtime rides out storage failures and keeps concurrent branches honest.

Failures are real: ``PRAGMA query_only`` on the SQLite writer's connection makes every write
fail (SQLITE_READONLY) until it is switched off again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import agent_runtime as ar
from agent_runtime import Runtime, step, wait_for_signal, workflow
from agent_runtime._sqlite import SQLiteStore

CALLS: Counter[str] = Counter()
IN_FLIGHT = {"now": 0, "max": 0}


async def set_read_only(store: SQLiteStore, on: bool) -> None:
    # On the writer's connection, between its transactions (its lock), outside of any:
    # the pragma is per connection and, once on, even BEGIN IMMEDIATE is refused.
    writer = store._writer
    with writer._busy:
        assert writer._conn is not None
        writer._conn.execute(f"PRAGMA query_only = {int(on)}")


STORE: dict[str, SQLiteStore] = {}


@step
async def work(tag: str) -> str:
    CALLS[tag] += 1
    if tag == "a" and CALLS[tag] == 1:
        await set_read_only(STORE["s"], True)  # the commit of this result will fail
    return f"{tag}-ok"


@workflow
async def commits_through_an_outage() -> str:
    return str(await work("a")) + "/" + str(await work("b"))


@step
async def charge() -> str:
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["max"] = max(IN_FLIGHT["max"], IN_FLIGHT["now"])
    try:
        await asyncio.sleep(0.3)
        CALLS["charged"] += 1
        return "charged"
    finally:
        IN_FLIGHT["now"] -= 1


@workflow
async def charge_and_wait() -> list[Any]:
    return list(await asyncio.gather(charge(), wait_for_signal("go")))


def test_a_storage_outage_interrupts_a_run_but_never_fails_it(tmp_path: Path) -> None:
    CALLS.clear()

    async def main() -> ar.Run:
        rt = Runtime(db=str(tmp_path / "r.db"), app=[commits_through_an_outage])
        assert isinstance(rt.store, SQLiteStore)
        STORE["s"] = rt.store
        async with rt:
            run = await rt.submit("commits_through_an_outage")
            await asyncio.sleep(1.0)  # the outage: the step's record cannot be written
            mid = await rt.get(run.id)
            assert mid.status in ("running", "pending"), mid.status
            await set_read_only(rt.store, False)  # storage is back
            return await rt.wait(run.id, timeout=20)

    done = asyncio.run(main())
    assert done.status == "completed", done.error
    assert done.result == "a-ok/b-ok"
    assert CALLS["a"] == 2  # its unrecorded result was computed again, once
    assert CALLS["b"] == 1


def test_a_suspending_branch_cancels_its_sibling_steps(tmp_path: Path) -> None:
    CALLS.clear()
    IN_FLIGHT.update(now=0, max=0)

    async def main() -> ar.Run:
        async with Runtime(db=str(tmp_path / "g.db"), app=[charge_and_wait]) as rt:
            run = await rt.submit("charge_and_wait")
            await asyncio.sleep(0.1)  # suspended on the signal; charge was in flight
            await rt.signal(run.id, "go", 1)
            return await rt.wait(run.id, timeout=20)

    done = asyncio.run(main())
    assert done.result == ["charged", 1]
    assert IN_FLIGHT["max"] == 1, "the same step ran twice at once"
    assert CALLS["charged"] == 1
