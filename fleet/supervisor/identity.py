"""Who runs as whom inside a tenant container, and how the supervisor gets there.

The container starts as root with three capabilities (layout.CONTAINER_CAPS: SETUID, SETGID,
SETPCAP; every other one dropped, no-new-privileges set). The supervisor's first stage uses
them once, for two ``execve`` calls through util-linux ``setpriv``:

- the runner (and so the runtime and all agent code) becomes AGENT_UID:AGENT_GID with no
  supplementary group;
- the supervisor itself becomes the keeper as SUPERVISOR_UID:SUPERVISOR_GID, with AGENT_GID as
  its one supplementary group (to reach the database files).

Each clears its capability bounding set, inheritable and ambient sets first (SETPCAP allows
that), then changes uids: from then on CapEff, CapPrm, CapInh, CapAmb and CapBnd are all zero,
in both processes and in everything they start, before any tenant code runs. Different uids
mean agent code cannot read the keeper's or Litestream's /proc/PID/environ or memory, cannot
ptrace or signal them, and cannot write what they own.
"""

from __future__ import annotations

from .layout import AGENT_GID, AGENT_UID, SUPERVISOR_GID, SUPERVISOR_UID

SETPRIV = "/usr/bin/setpriv"

# Capability numbers (linux/capability.h) the first stage needs.
_CAP_SETGID, _CAP_SETUID, _CAP_SETPCAP = 6, 7, 8
_NEEDED = (_CAP_SETGID, _CAP_SETUID, _CAP_SETPCAP)


def _drop(uid: int, gid: int, groups: str, argv: list[str]) -> list[str]:
    return [
        SETPRIV,
        f"--reuid={uid}",
        f"--regid={gid}",
        groups,
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *argv,
    ]


def as_agent(argv: list[str]) -> list[str]:
    """``argv`` as the runtime's uid, with no capability left anywhere."""
    return _drop(AGENT_UID, AGENT_GID, "--clear-groups", argv)


def as_supervisor(argv: list[str]) -> list[str]:
    """``argv`` as the keeper's uid (in the database group), with no capability left."""
    return _drop(SUPERVISOR_UID, SUPERVISOR_GID, f"--groups={AGENT_GID}", argv)


def effective_caps(status: str) -> int:
    """CapEff from the text of /proc/PID/status (0 when absent)."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def cannot_switch(uid: int, status: str) -> str | None:
    """Why a process with ``uid`` and this /proc/self/status cannot start the tenant's
    identities (one line), or None."""
    caps = effective_caps(status)
    if uid == 0 and all(caps >> c & 1 for c in _NEEDED):
        return None
    return (
        f"cannot run agent code under a uid of its own: started as uid {uid} without "
        "CAP_SETUID, CAP_SETGID and CAP_SETPCAP (create the container as the fleet does: "
        f"user 0:0, cap_drop ALL, cap_add {', '.join(('SETUID', 'SETGID', 'SETPCAP'))})"
    )
