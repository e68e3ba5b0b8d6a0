"""Running untrusted code in a throwaway container (see core/hosting.py ``Sandbox``): the
import check of a template build, the replay check of `fleet deploy`."""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from fleet.core import names
from fleet.core.errors import FleetTimeout
from fleet.core.hosting import Sandbox, SandboxResult

from .container_spec import sandbox_config
from .network import ensure_tenant_network

_OUTPUT_LIMIT = 4 << 20  # what is read back of each stream


def run_sandboxed(client: Any, job: Sandbox) -> SandboxResult:
    """Create the container, put ``job.files`` into its /data, run it to the end (killed
    after ``job.timeout``), read its output and remove it with its anonymous volume."""
    from requests.exceptions import ConnectionError, ReadTimeout

    network = ensure_tenant_network(client) if job.network else None
    name = f"litefleet-sandbox-{int(time.time() * 1000) % 10**8}-{id(job) % 10**4}"
    container = client.containers.create(**sandbox_config(job, name, network))
    try:
        if job.files:
            with tempfile.TemporaryFile() as tar:
                container.put_archive(names.DATA_DIR, _tar(job.files, tar))
        container.start()
        try:
            status = container.wait(timeout=job.timeout)
        except (ConnectionError, ReadTimeout):  # what the SDK raises when the wait times out
            raise FleetTimeout(
                f"{' '.join(job.argv[:2])} did not finish within {job.timeout:g}s"
            ) from None
        return SandboxResult(
            exit_code=int(status.get("StatusCode", 1)),
            stdout=_read(container, stdout=True),
            stderr=_read(container, stdout=False),
        )
    finally:
        container.remove(force=True, v=True)


def _read(container: Any, *, stdout: bool) -> str:
    data: bytes = container.logs(stdout=stdout, stderr=not stdout)
    return data[-_OUTPUT_LIMIT:].decode(errors="replace")


def _tar(files: Mapping[str, Path], into: IO[bytes]) -> IO[bytes]:
    """The files as a tar (in ``into``), owned by the tenant's user, readable by it only."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = names.TENANT_UID
        info.uname = info.gname = ""
        info.mode = 0o600
        return info

    with tarfile.open(fileobj=into, mode="w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name, recursive=False, filter=owned)
    into.seek(0)
    return into
