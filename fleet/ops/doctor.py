"""`fleet doctor`: what is wrong with this set-up, before a tenant fails in a confusing way.

One Check per line: the Docker engines (version, cgroup, storage driver; every host the same),
the tenant and template images (present, of this package's version), the object store
(reachable, bucket, conditional writes, clock offset from its Date header) and this machine's
free disk and memory. A check that cannot pass says how to fix it (its hint).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from fleet.core import names
from fleet.core.context import Fleet
from fleet.core.errors import FleetError, translate
from fleet.engine.engine_facts import EngineFacts, engine_facts
from fleet.engine.hosts import Host
from fleet.storage.preflight import check_conditional_writes, check_tenant_credentials
from fleet.storage.store_checks import store_facts
from fleet.supervisor.s3 import S3Settings

OK, WARN, FAIL = "ok", "warn", "fail"
CLOCK_WARN_S = 1.0  # the lease tolerates small offsets; above this, say so
MIN_DISK_BYTES = 2 * 1024**3
MIN_MEMORY_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class Check:
    check: str
    status: str  # OK, WARN (reported, does not fail) or FAIL
    detail: str
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def doctor(fleet: Fleet) -> list[Check]:
    """Every check, in the order a set-up is fixed in."""
    facts = [engine_facts(h, fleet.settings.image) for h in _engines(fleet)]
    checks = [_engine_check(f) for f in facts]
    checks += _same_hosts(facts)
    checks.append(_images_check(facts, fleet.settings.image))
    checks += _store_checks(fleet)
    checks += _resources(next((f.root_dir for f in facts if f.root_dir), ""))
    return checks


def _engines(fleet: Fleet) -> list[Host]:
    """The engines of FLEET_HOSTS (or of the Swarm manager and its nodes' engines)."""
    hosting = fleet.hosting
    manager = getattr(hosting, "manager", None)
    engines: list[Host] = list(getattr(hosting, "engines", []))
    return [manager, *engines] if isinstance(manager, Host) else engines


def _engine_check(f: EngineFacts) -> Check:
    name = f"engine {f.host}"
    if f.error:
        hint = "start it (make engine) or fix FLEET_HOSTS / DOCKER_HOST"
        return Check(name, FAIL, f.error, hint)
    return Check(name, OK, f"Docker {f.version}, {f.cgroup}, {f.storage_driver}")


def _same_hosts(facts: list[EngineFacts]) -> list[Check]:
    seen = {f.host: f.same_as() for f in facts if not f.error}
    if len(seen) < 2:
        return []
    if len(set(seen.values())) == 1:
        return [Check("hosts", OK, f"{len(seen)} engines alike")]
    detail = "; ".join(f"{h}: {', '.join(v)}" for h, v in seen.items())
    return [Check("hosts", FAIL, f"engines differ ({detail})", "run one Docker version alike")]


def _images_check(facts: list[EngineFacts], image: str) -> Check:
    want = names.version()
    found = [f for f in facts if not f.error]
    if not any(f.tenant_image is not None for f in found):
        return Check("images", FAIL, f"{image} is on no engine", "run `fleet image build`")
    stale = [
        f"{ref} ({have or 'no version'})"
        for f in found
        for ref, have in [(image, f.tenant_image), *f.template_images.items()]
        if have is not None and have != want
    ]
    if stale:
        detail = f"not litefleet {want}: {', '.join(sorted(set(stale)))}"
        return Check("images", FAIL, detail, "run `fleet image build`, rebuild templates")
    templates = len({t for f in found for t in f.template_images})
    return Check("images", OK, f"{image} and {templates} template image(s) are litefleet {want}")


def _store_checks(fleet: Fleet) -> list[Check]:
    try:
        s3 = fleet.storage.for_fleet()
        facts = store_facts(s3)
    except Exception as exc:
        err = exc if isinstance(exc, FleetError) else translate(exc)
        if err is None:
            err = FleetError(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        hint = err.hint or "check FLEET_S3_ENDPOINT and its keys"
        return [Check("object store", FAIL, err.message, hint)]
    checks = [Check("object store", OK, s3.endpoint)]
    if not facts.bucket_exists:
        hint = "create it, or set FLEET_S3_BUCKET"
        checks.append(Check("bucket", FAIL, f"bucket {s3.bucket} does not exist", hint))
    else:
        checks.append(Check("bucket", OK, s3.bucket))
        checks.append(_conditional(s3))
    checks.append(_clock(facts.clock_offset_s))
    if fleet.settings.s3_credentials == "iam":
        checks.append(_tenant_credentials(s3, fleet.storage.iam_endpoint()))
    return checks


def _tenant_credentials(s3: S3Settings, iam_endpoint: str | None) -> Check:
    """FLEET_S3_CREDENTIALS=iam: a tenant's user, policy and key can be made (and removed)."""
    try:
        check_tenant_credentials(s3, iam_endpoint)
    except FleetError as exc:
        return Check("tenant credentials", FAIL, exc.message, exc.hint or "")
    return Check("tenant credentials", OK, "a per-tenant key can be made (IAM)")


def _conditional(s3: S3Settings) -> Check:
    """The check `fleet up` makes: a stale If-Match and If-None-Match: * are both refused."""
    try:
        check_conditional_writes(s3)
    except FleetError as exc:
        return Check("conditional writes", FAIL, exc.message, exc.hint or "")
    return Check("conditional writes", OK, "If-None-Match and If-Match honoured")


def _clock(offset: float | None) -> Check:
    if offset is None:
        return Check("clock", WARN, "the store sent no Date header", "")
    detail = f"{offset:+.1f} s from the store"
    if abs(offset) > CLOCK_WARN_S:
        return Check("clock", WARN, detail, "synchronise this host's clock (NTP)")
    return Check("clock", OK, detail)


def _resources(docker_root: str) -> list[Check]:
    """Free disk where the engine keeps its data (when it is on this machine) and memory."""
    where = docker_root if docker_root and Path(docker_root).is_dir() else "/"
    free = shutil.disk_usage(where).free
    disk = Check("disk", OK, f"{free / 1024**3:.1f} GB free at {where}")
    if free < MIN_DISK_BYTES:
        disk = Check("disk", FAIL, disk.detail, "free disk space (docker image prune)")
    mem = _mem_available()
    if mem is None:
        return [disk]
    memory = Check("memory", OK, f"{mem / 1024**3:.1f} GB available")
    if mem < MIN_MEMORY_BYTES:
        memory = Check("memory", FAIL, memory.detail, "stop tenants (fleet park) or add memory")
    return [disk, memory]


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    return None
