"""Every error the fleet CLI reports on purpose, and the one place foreign errors are mapped.

Each FleetError carries a one-line message, a ``hint`` (what to do next) and an exit code.
The CLI prints ``fleet: <message> (<hint>)`` on stderr and exits with ``exit_code``; no
traceback. Messages never contain secrets (tokens, S3 keys).
"""

from __future__ import annotations


class FleetError(Exception):
    """Base class: an error meant for the user."""

    exit_code: int = 1
    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__

    def line(self) -> str:
        """The single line shown to the user."""
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InvalidArgument(FleetError):
    """Bad input on the command line (name, label, duration, JSON...)."""

    exit_code = 2


class ConfigError(FleetError):
    """Settings or config file unusable."""

    exit_code = 2


class TenantNotFound(FleetError):
    exit_code = 3

    def __init__(self, tenant: str) -> None:
        super().__init__(f"no tenant named {tenant!r}", "`fleet ls` lists the tenants")
        self.tenant = tenant


class TenantNotRunning(FleetError):
    exit_code = 3

    def __init__(self, tenant: str, state: str) -> None:
        super().__init__(f"tenant {tenant!r} is {state}", f"start it with `fleet up {tenant}`")


class EngineUnavailable(FleetError):
    """A Docker engine does not answer."""

    exit_code = 4
    hint = "start it (`make engine`) or check DOCKER_HOST / FLEET_HOSTS"


class ImageMissing(FleetError):
    exit_code = 4
    hint = "build it with `fleet image build` (or set FLEET_IMAGE)"


class ImageOutdated(FleetError):
    exit_code = 4
    hint = "rebuild it for this version with `fleet image build`"


class TemplateNotFound(FleetError):
    exit_code = 4
    hint = "`fleet template ls` lists them; `fleet template build DIR --name NAME` makes one"

    def __init__(self, template: str) -> None:
        super().__init__(f"no template {template!r} on the build host")


class FirewallError(FleetError):
    """A tenant's egress rules could not be applied on its engine's host."""

    exit_code = 4


class ObjectStoreError(FleetError):
    """S3 (or the embedded store) failed or holds nothing useful."""

    exit_code = 5


class BackupNotFound(ObjectStoreError):
    def __init__(self, tenant: str, bucket: str) -> None:
        super().__init__(
            f"no backup of tenant {tenant!r} in bucket {bucket!r}",
            "a tenant is backed up once `fleet up` ran it with replication",
        )


class RuntimeApiError(FleetError):
    """The tenant's runtime API answered with an error or not at all."""

    exit_code = 6
    status: int | None = None  # the HTTP status it answered with, if it answered


class RunNotFound(FleetError):
    exit_code = 3

    def __init__(self, tenant: str, run_id: str) -> None:
        super().__init__(f"tenant {tenant!r} has no run {run_id!r}", f"`fleet runs {tenant}`")


class FleetTimeout(FleetError):
    exit_code = 7


class RunUnsuccessful(FleetError):
    """``fleet run --wait`` saw the run end failed or cancelled (the run was printed)."""

    exit_code = 1


class TenantLeased(FleetError):
    """The tenant's lease is live on another holder (one writer per tenant)."""

    exit_code = 8


class CodeIncompatible(FleetError):
    """New code would break runs its tenant recorded (`fleet deploy`'s replay check)."""

    exit_code = 9


class Aborted(FleetError):
    exit_code = 1


def translate(exc: BaseException) -> FleetError | None:
    """Map an exception from a library we use to a FleetError; None when unknown.

    This is the only place foreign exceptions become user errors.
    """
    if isinstance(exc, FleetError):
        return exc
    # Imported lazily: `fleet --help` must not pay for docker/botocore/httpx imports.
    import botocore.exceptions
    import docker.errors
    import httpx

    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageMissing(f"image not found: {_first_line(exc)}")
    if isinstance(exc, docker.errors.DockerException):
        text = _first_line(exc)
        if "Connection" in text or "FileNotFoundError" in text or "Error while fetching" in text:
            return EngineUnavailable("the Docker engine does not answer")
        return FleetError(f"docker: {text}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return ObjectStoreError(
            "object storage does not answer", "`fleet s3 up` starts the embedded store"
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "error")
        return ObjectStoreError(f"object storage refused the request: {code}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return ObjectStoreError(f"object storage: {_first_line(exc)}")
    if isinstance(exc, httpx.TimeoutException):
        return FleetTimeout("the tenant's runtime API did not answer in time")
    if isinstance(exc, httpx.HTTPError):
        return RuntimeApiError(f"the tenant's runtime API is unreachable: {type(exc).__name__}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
