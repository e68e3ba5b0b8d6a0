"""The Typer apps, the options several commands share, and the Fleet a command works on.

Importing this (and the command modules) loads Typer only: settings (pydantic), the engines
(docker), object storage (boto3), the runtime API (httpx), SQLite (apsw) and Rich output are
imported inside the commands that use them, so `fleet --help` pays for none of them.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet.core.errors import Aborted
from fleet.core.names import DEFAULT_APP

if TYPE_CHECKING:
    from fleet.core.context import Fleet
    from fleet.core.hosting import TransferProgress

HELP = "Run and manage per-tenant litefleet runtimes on Docker engines."

app = typer.Typer(
    name="fleet",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
s3_app = typer.Typer(
    help="The embedded S3 object store (used when FLEET_S3_ENDPOINT is unset).",
    no_args_is_help=True,
)
image_app = typer.Typer(help="Tenant container images.", no_args_is_help=True)
k8s_app = typer.Typer(help="Kubernetes, on paper (docs/kubernetes.md).", no_args_is_help=True)
template_app = typer.Typer(
    help="Templates: your agent's code and its dependencies on top of the tenant image.",
    no_args_is_help=True,
)
app.add_typer(s3_app, name="s3")
app.add_typer(image_app, name="image")
app.add_typer(k8s_app, name="k8s")
app.add_typer(template_app, name="template")

# -- shared options

Tenant = Annotated[
    str, typer.Argument(help="Tenant name (a DNS label: a-z, 0-9, '-').", metavar="TENANT")
]
Tenants = Annotated[
    list[str] | None,
    typer.Argument(help="Tenant names (DNS labels: a-z, 0-9, '-').", metavar="TENANT..."),
]
Count = Annotated[
    int | None, typer.Option(help="Also N tenants named <prefix>1..<prefix>N.", metavar="N")
]
Prefix = Annotated[str | None, typer.Option(help="Name prefix for --count.", metavar="P")]
Labels = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", help="Label k=v (repeatable; all must match).", metavar="K=V"),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ForceTakeover = Annotated[
    bool,
    typer.Option(
        "--force-takeover",
        help="Take the tenant's lease from a live holder: it stops replicating at its next"
        " renewal (within 5 s), without a final sync.",
    ),
]
Purge = Annotated[
    bool, typer.Option("--purge", help="Also delete the backup in object storage (asks first).")
]
Memory = Annotated[str, typer.Option(help="Memory limit (docker syntax, e.g. 256m).")]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="The app registering the workflows: a local .py file or directory (built into an"
        " implicit template named after it, cached by content), or a module in the image"
        f" (default: the template's, else {DEFAULT_APP}).",
        metavar="PATH_OR_MODULE",
    ),
]
TemplateRef = Annotated[
    str | None,
    typer.Option(
        "--template",
        help="A template (`fleet template ls`); its newest version unless VERSION is given.",
        metavar="NAME[:VERSION]",
    ),
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        help="postgresql://USER:PASSWORD@HOST:PORT/DB: run on PostgreSQL instead of SQLite"
        " + Litestream (`fleet rm` leaves the data there). A 127.0.0.1/localhost host is"
        " rewritten to the litefleet network's gateway IP, which containers reach (a note"
        " says so; `bash images/postgres.sh start` listens there). The password goes to the"
        " container as PGPASSWORD and is never printed.",
        metavar="URL",
    ),
]
Cpus = Annotated[float, typer.Option(help="CPU limit in cores.")]
EnvVars = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", help="Extra env K=V for the runtime.", metavar="K=V"),
]
Egress = Annotated[
    str | None,
    typer.Option(
        help="What the tenant may reach: public (the default: public addresses, not private"
        " ranges, link-local, this host or other tenants), none, or HOST[:PORT],... exactly"
        " those (IPv4 addresses or DNS names). Its object store and database stay reachable."
        " Enforced on the host; kept when the tenant is stopped and started again.",
        metavar="public|none|LIST",
    ),
]


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="FLEET_CONFIG", help="TOML settings file.", dir_okay=False),
    ] = None,
) -> None:
    """Run and manage per-tenant litefleet runtimes on Docker engines."""
    ctx.obj = config


def fleet_of(ctx: typer.Context) -> Fleet:
    """The command's Fleet, made once per invocation and closed with it."""
    from fleet.core.context import Fleet
    from fleet.core.log import configure
    from fleet.core.settings import load_settings
    from fleet.ops.connect import connect

    root = ctx.find_root()
    fleet = root.meta.get("fleet")
    if fleet is None:
        settings = load_settings(root.obj)
        configure(settings.log_level)
        fleet = connect(settings)
        root.meta["fleet"] = fleet
        root.call_on_close(fleet.close)
    assert isinstance(fleet, Fleet)
    return fleet


def labels(items: list[str] | None) -> dict[str, str]:
    from fleet.core.names import parse_labels

    return parse_labels(items)


def confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise Aborted("refusing to delete without confirmation", "pass --yes")
    if not typer.confirm(question, default=False):
        raise Aborted("aborted")


def image_progress() -> TransferProgress:
    """A progress bar for copying the tenant image to another host (Rich, on stderr)."""
    from .output_hosts import ImageProgress

    return ImageProgress()


class BulkProgress:
    """One progress bar on stderr for a command over many tenants (none for one tenant)."""

    def __init__(self, verb: str, total: int) -> None:
        self.verb, self.total = verb, total
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> BulkProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, total: int) -> None:
        if total < 2:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from .output import err

        self.bar = Progress(
            TextColumn(self.verb),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self.task = self.bar.add_task(self.verb, total=total)
        self.bar.start()

    def done(self, tenant: str, result: object) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)


@contextlib.contextmanager
def until_interrupted() -> Iterator[None]:
    """Ctrl-C or SIGTERM ends a command that runs until stopped: quietly, exit 0, after its
    own clean-up (``finally`` blocks) ran."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
