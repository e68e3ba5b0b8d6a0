"""Helpers for the fleet tests: run the CLI in-process or as a subprocess, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLEET = str(Path(sys.executable).with_name("fleet"))


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli_env(image: str, bucket: str = "litefleet-test", **more: str) -> dict[str, str]:
    """The fleet CLI's settings in a Docker test: the image under test, the test bucket
    (tests/docker_fixtures.TEST_BUCKET by default), a health timeout for a loaded machine, no
    config file from the user's home, tables wide enough to read."""
    return {
        "FLEET_IMAGE": image,
        "FLEET_S3_BUCKET": bucket,
        "FLEET_HEALTH_TIMEOUT": "90",
        "FLEET_CONFIG": "",
        "COLUMNS": "250",
        **more,
    }


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run `fleet ARGS` in this process through main() (the real error path)."""
    from fleet.cli.app import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def fleet(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    """Run the installed `fleet` console script as a user would."""
    proc = subprocess.run(
        [FLEET, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line_error(r: Result) -> str:
    """The error a failed command printed; asserts it is one line and no traceback."""
    assert r.code != 0, r
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err
    assert lines[0].startswith("fleet: "), lines[0]
    return lines[0]
