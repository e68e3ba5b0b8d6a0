"""PostgreSQL schema of the Postgres store: the same tables and history format as SQLite.

JSON values (input, result, error, event data, signal payloads) are stored as ``text``
holding JSON, exactly as the SQLite backend stores them, so a history reads back
byte-for-byte the same on either backend (``jsonb`` would reorder object keys).
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Serialises concurrent ``open()`` calls of several processes creating the schema at once
# (CREATE ... IF NOT EXISTS alone still races on the catalog).
SCHEMA_LOCK_KEY = 0x6C66_7363  # "lfsc"

# Channel of the NOTIFY sent when a run becomes runnable (new, signalled, released pending).
WORK_CHANNEL = "agent_runtime_work"

DDL = """
CREATE TABLE IF NOT EXISTS runs (
    num         bigserial UNIQUE,             -- creation order, used by list cursors
    id          text PRIMARY KEY,
    workflow    text NOT NULL,
    status      text NOT NULL,
    input       text NOT NULL,
    result      text,
    error       text,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    wake_at     double precision,
    waiting_on  text,                         -- signal name a waiting run waits for
    owner       text,
    lease_until double precision,
    last_seq    bigint NOT NULL DEFAULT 0     -- events.seq is per run: 1, 2, 3...
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, num);
CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, num);
CREATE INDEX IF NOT EXISTS runs_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS events (
    run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    position    integer,
    name        text,
    attempt     integer,
    data        text,
    terminal    boolean NOT NULL DEFAULT false,
    created_at  double precision NOT NULL,
    PRIMARY KEY (run_id, seq)
);
-- A command position closes once: re-execution after a crash cannot record it twice.
CREATE UNIQUE INDEX IF NOT EXISTS events_terminal ON events (run_id, position) WHERE terminal;

CREATE TABLE IF NOT EXISTS signals (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name        text NOT NULL,
    payload     text,
    created_at  double precision NOT NULL,
    consumed_at double precision
);
CREATE INDEX IF NOT EXISTS signals_unconsumed ON signals (run_id, name, id)
    WHERE consumed_at IS NULL;

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer NOT NULL
);
"""
