"""A backup seeded from a database file on this machine (`fleet fork` on Swarm), without Docker:
real Litestream, a real S3 endpoint (moto's server), a real runtime's database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import agent_runtime.examples as examples
from agent_runtime import Runtime, open_copy
from fleet.core.errors import ObjectStoreError
from fleet.storage.backups import backup_state
from fleet.storage.litestream import restore_copy, seed_backup
from fleet.supervisor.s3 import S3Settings

from .moto_support import moto_s3


async def _runs(db: Path, ids: list[str]) -> None:
    async with Runtime(db=str(db), app=examples) as rt:
        for run_id in ids:
            await rt.submit("echo", {"message": run_id}, id=run_id)
            assert (await rt.wait(run_id, timeout=60)).status == "completed"


def _run_ids(db: Path) -> set[str]:
    with open_copy(db) as copy:
        return set(copy.statuses())


def test_a_seeded_backup_restores_the_file_it_was_seeded_from(tmp_path: Path) -> None:
    with moto_s3("seed-bucket") as s3:
        src = tmp_path / "src" / "tenant.db"
        src.parent.mkdir()
        asyncio.run(_runs(src, ["a", "b"]))
        seed_backup(s3, "src", src)
        assert backup_state(s3, "src").txid > 0

        copy = tmp_path / "copy" / "tenant.db"
        copy.parent.mkdir()
        txid = restore_copy(s3, "src", copy)
        assert txid == backup_state(s3, "src").txid
        assert _run_ids(copy) == {"a", "b"}

        # The copy seeds another tenant's backup (a fork); the source's is left alone.
        before = backup_state(s3, "src")
        seed_backup(s3, "new", copy)
        again = tmp_path / "again" / "tenant.db"
        again.parent.mkdir()
        restore_copy(s3, "new", again)
        assert _run_ids(again) == {"a", "b"}
        assert backup_state(s3, "src") == before


def test_seeding_into_an_unreachable_store_is_an_object_store_error(tmp_path: Path) -> None:
    db = tmp_path / "tenant.db"
    asyncio.run(_runs(db, ["a"]))
    nowhere = S3Settings("http://127.0.0.1:9", "b", "us-east-1", "k", "s")
    with pytest.raises(ObjectStoreError, match="litestream replicate failed"):
        seed_backup(nowhere, "x", db)
