#!/bin/sh
# The runner of a SQLite tenant (fleet/supervisor/runner.py says why it exists), as the agent
# uid: `litefleet-runner CMD...`, with the keeper's control pipe on fd 3. It waits for "start"
# (the lease is held, the database prepared), leaves a reader of the pipe behind and becomes
# the runtime (exec: the keeper waits for the runtime itself). The reader turns "stop" into
# SIGTERM (the runtime drains), "kill" into SIGKILL, and the end of the pipe (the keeper is
# gone) into SIGTERM. A shell, not Python: it idles for the tenant's whole life (~1.6 MB).
IFS= read -r msg <&3 || exit 0
[ "$msg" = start ] || exit 0
self=$$
{
    while IFS= read -r msg; do
        case $msg in
            kill) kill -KILL "$self" ;;
            *) kill -TERM "$self" ;;
        esac
    done
    kill -TERM "$self"
} <&3 >/dev/null 2>&1 &
exec "$@" 3<&-
