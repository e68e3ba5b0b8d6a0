"""What runs inside every tenant container: standard library only.

This package ships in the tenant image with the rest of litefleet but must import nothing
outside the standard library and itself (a test enforces it): the keeper idles for the
container's whole life and its memory is a per-tenant cost.

The container contract (fleet/engine/container_spec.py makes it; any other backend must too)
------------------------------------------------------------------------------------------------
- Started as ``user 0:0`` with every capability dropped but SETUID, SETGID and SETPCAP
  (layout.CONTAINER_USER, CONTAINER_CAPS), ``no-new-privileges``, a read-only root, tmpfs
  ``/tmp`` (1777) and ``/run/litefleet`` (0755, owned by SUPERVISOR_UID), the tenant's volume
  at ``/data``, and no init (the supervisor is PID 1 and reaps orphans).
- Restart policy ``on-failure``; the exit status says whether to come back (exits.py). SIGTERM
  stops until the engine starts the container again (143), SIGUSR1 then SIGTERM stops for good
  (0: `fleet down`).
- Environment: TENANT, LITEFLEET_S3_* and the S3 key, LITEFLEET_HOST, AGENT_RUNTIME_TOKEN and
  _APP, the app's variables (never a reserved name: fleet.core.names.RESERVED_ENV),
  optional LITEFLEET_LEASE_TTL/_RENEW/_WAIT; a PostgreSQL tenant AGENT_RUNTIME_DB + PGPASSWORD.

The process tree of a SQLite tenant (`docker top` shows the two uids)::

    PID 1  python3 -I -m fleet.supervisor keep    SUPERVISOR_UID 10001  keeper.py: the lease
    ├─ litestream replicate -config ...            SUPERVISOR_UID 10001  (no -exec)
    └─ python3 -I -u -m agent_runtime serve ... --lease-file /run/litefleet/lease.json
       │                                           AGENT_UID 10002       all agent code
       └─ /bin/sh litefleet-runner ...            AGENT_UID 10002       reads the keeper's pipe

The runtime starts as the runner (images/tenant/runner.sh), which waits on the keeper's pipe
until the lease is held and the database ready, then leaves a reader of the pipe behind and
execs the runtime: the keeper's child *is* the runtime.

PID 1 starts as root (``start``), forks the runner and execs itself into the keeper; both go
through ``setpriv``, which clears every capability set, the bounding set included, before
they change uid: no process holds a capability when any tenant code runs. A PostgreSQL tenant
is ``run-app`` (runner.py, PID 1, AGENT_UID) and the runtime.

Modules, one concept each:

- ``layout``: names the container and the fleet agree on (paths, uids, variables, object keys,
  the tenant-name rule). ``fleet.core.names`` re-exports them.
- ``identity``: who runs as whom, and the ``setpriv`` command lines that get there.
- ``environments``: which variables each process gets.
- ``s3``: the S3 settings type, a SigV4 signer and a minimal HTTP/1.1 client.
- ``lease``: the one-writer lease protocol on top of it (no wall-clock decisions).
- ``lease_gate``: the file that tells the runtime whether it may execute steps.
- ``keeper``: holds the lease and runs the tenant's processes by it (PID 1).
- ``children``: the keeper's children: Litestream (pause, resume, final sync) and the runner.
- ``runner``: the agent uid's end (for SQLite tenants images/tenant/runner.sh; this module is
  PID 1 of a PostgreSQL tenant).
- ``litestream``: Litestream command lines and their ``-json`` output.
- ``volume``: before replicating, restore when empty and set a stale database aside.
- ``permissions``: owners and modes on the volume (what agent code may touch).
- ``restarts``: the restart bound, recorded on the volume.
- ``report``: the state file `fleet ls` reads (lease, store, restarts).
- ``exits``: what an exit status means to the engine and to people.
- ``entrypoint``: the stages; ``__main__``: ``python3 -I -m fleet.supervisor STAGE``.
"""
