"""The CLI surface without Docker: help texts, argument parsing, one-line errors."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from fleet.cli.app import app

from .fleet_support import cli, fleet, one_line_error

COMMANDS = {
    "up",
    "k8s",
    "park",
    "wake",
    "token",
    "gateway",
    "ls",
    "down",
    "rm",
    "teardown",
    "gc",
    "logs",
    "run",
    "runs",
    "signal",
    "cancel",
    "pull",
    "inspect",
    "hosts",
    "restore",
    "migrate",
    "s3",
    "image",
    "template",
    "deploy",
    "console",
    "fork",
    "watch",
    "verify",
    "doctor",
}


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, cmd)]
    if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
        for name, sub in cmd.commands.items():
            found += _walk(sub, (*path, name))
    return found


def test_every_command_and_option_has_help() -> None:
    root: Any = typer.main.get_command(app)
    assert set(root.commands) == COMMANDS
    walked = _walk(root)
    assert len(walked) > len(COMMANDS)  # s3 up|down|status, image build
    for path, cmd in walked:
        assert (cmd.help or "").strip(), f"`fleet {' '.join(path)}` has no help text"
        for p in cmd.params:
            where = f"fleet {' '.join(path)} {p.opts}"
            assert p.param_type_name in ("option", "argument"), where
            if p.name != "help":
                assert (getattr(p, "help", None) or "").strip(), f"{where} has no help"


@pytest.mark.parametrize("args", [["--help"], ["up", "--help"], ["s3", "--help"]])
def test_help_exits_zero(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    r = cli(capsys, *args)
    assert r.code == 0 and "Usage" in r.out


def test_no_arguments_shows_usage(capsys: pytest.CaptureFixture[str]) -> None:
    r = cli(capsys)
    assert "Usage" in r.out + r.err and "teardown" in r.out + r.err


@pytest.mark.parametrize(
    "args",
    [
        ["up", "Bad_Name"],
        ["up", "--", "-leading"],
        ["down", "a" * 64],
        ["rm", "UPPER", "--yes"],
        ["run", "x.y", "echo"],
        ["pull", "../etc"],
        ["logs", "a b"],
    ],
)
def test_invalid_tenant_names_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    r = cli(capsys, *args)
    assert r.code == 2
    assert "invalid tenant name" in one_line_error(r)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["up", "ok", "--ttl", "soon"], "invalid duration"),
        (["up", "ok", "--label", "nokey"], "invalid label"),
        (["up", "ok", "--env", "1BAD=x"], "invalid environment variable"),
        (["up", "ok", "--cpus", "0"], "--cpus must be positive"),
        (["run", "ok", "echo", "--input", "{not json"], "--input is not valid JSON"),
        (["run", "ok", "echo", "--input", "[1, 2]"], "--input must be a JSON object"),
        (["run", "ok", "echo", "--input", "@/nonexistent/in.json"], "cannot read --input file"),
        (["signal", "ok", "r", "go", "--data", "{"], "--data is not valid JSON"),
        (["teardown"], "teardown needs --label k=v or --all"),
        (["teardown", "--all", "--label", "a=b"], "not both"),
        (["pull", "ok", "--at", "yesterday", "-o", "/nonexistent/x.db"], "invalid timestamp"),
        (["inspect", "/nonexistent/file.db"], "invalid tenant name"),
        (["up", "ok", "--template", "t", "--image", "i"], "--template or --image, not both"),
        (["up", "ok", "--template", "Bad_Name"], "invalid template name"),
        (["up", "ok", "--template", "t:v-1"], "invalid template version"),
        (["up", "ok", "--app", "./nonexistent/agents.py"], "no such file or directory"),
        (["template", "build", "/nonexistent", "--name", "t"], "cannot read /nonexistent"),
        (["template", "build", ".", "--name", "Bad"], "invalid template name"),
        (["template", "rm", "a:b:c"], "invalid template version"),
        (["deploy", "--template", "t"], "no tenant to deploy"),
        (["deploy", "ok"], "--template NAME[:VERSION] is required"),
        (["deploy", "Bad", "--template", "t"], "invalid tenant name"),
    ],
)
def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    needle: str,
) -> None:
    # No engine may be needed to reject these: point Docker at nothing.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("FLEET_S3_ENDPOINT", "http://127.0.0.1:9")
    r = cli(capsys, *args)
    assert needle in one_line_error(r)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    r = cli(capsys, "up")
    assert r.code == 2 and "name at least one tenant" in one_line_error(r)
    r = cli(capsys, "park", "--count", "3")
    assert r.code == 2 and "--count N and --prefix P go together" in one_line_error(r)
    r = cli(capsys, "wake", "a", "a")
    assert r.code == 2 and "named twice" in one_line_error(r)
    r = cli(capsys, "verify")
    assert r.code == 2 and "name the tenants to verify" in one_line_error(r)
    r = cli(capsys, "verify", "--all", "--label", "a=b")
    assert r.code == 2 and "not both" in one_line_error(r)
    r = cli(capsys, "verify", "a", "a")
    assert r.code == 2 and "named twice" in one_line_error(r)
    r = cli(capsys, "verify", "Not_A_Name")
    assert r.code == 2 and "Not_A_Name" in one_line_error(r)
    r = cli(capsys, "gateway", "--verify-every", "soon")
    assert r.code == 2 and "invalid duration" in one_line_error(r)
    r = cli(capsys, "frobnicate")
    assert r.code == 2 and "No such command" in r.err


def test_engine_down_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    for args in (["ls"], ["up", "acme"], ["down", "acme"], ["s3", "status"]):
        r = cli(capsys, *args)
        assert r.code == 4, (args, r)
        assert "does not answer" in one_line_error(r)


def test_bad_config_is_one_line(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "fleet.toml"
    cfg.write_text("s3_bukket = 'x'\n")
    r = cli(capsys, "--config", str(cfg), "ls")
    assert r.code == 2 and "s3_bukket" in one_line_error(r)


def test_console_script_reports_errors_without_traceback() -> None:
    r = fleet("up", "NOPE", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.code == 2
    assert one_line_error(r) == (
        "fleet: invalid tenant name 'NOPE' (hint: use 1-63 characters a-z, 0-9 and '-', "
        "not starting or ending with '-')"
    )
    r = fleet("ls", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert r.code == 4 and "Traceback" not in r.err
