"""Shared fixtures. Docker and PostgreSQL fixtures live in their own plugin modules and
start what they need (see tests/docker_fixtures.py and tests/pg_fixtures.py)."""

from __future__ import annotations

import os

import structlog

# Tests that start containers cannot pull testcontainers' reaper image here.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

# Keep library logs quiet in tests (the CLI configures JSON logs itself).
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
