"""What `fleet doctor` prints: one line per check (and its hint when it fails), or JSON."""

from __future__ import annotations

from fleet.ops.doctor import FAIL, WARN, Check

from .output import out, print_json

_MARK = {FAIL: "[red]FAIL[/red]", WARN: "[yellow]warn[/yellow]"}


def show(checks: list[Check], as_json: bool) -> None:
    if as_json:
        print_json({"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]})
        return
    for c in checks:
        hint = f" (hint: {c.hint})" if c.hint and c.status != "ok" else ""
        mark = _MARK.get(c.status, "[green]ok[/green]  ")
        out.print(f"{mark} {c.check}: ", end="")
        out.print(f"{c.detail}{hint}", markup=False, highlight=False)
