"""Shared fixtures. Docker and PostgreSQL fixtures live in their own plugin modules and
start what they need (see tests/docker_fixtures.py and tests/pg_fixtures.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["tests.docker_fixtures", "tests.pg_fixtures", "tests.second_engine"]

# Tests that start containers cannot pull testcontainers' reaper image here.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def _quiet_logs() -> None:
    # Warnings and up; the CLIs configure their own JSON/stderr logging when they run.
    structlog.reset_defaults()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


_quiet_logs()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A CLI invoked in-process (CliRunner) binds structlog to a stream pytest closes
    afterwards; reset it so later tests can log."""
    yield
    _quiet_logs()
