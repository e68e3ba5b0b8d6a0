#!/bin/bash
# Tenant container entrypoint.
#   SQLite (default): restore /data/tenant.db from the tenant's replica when the volume is empty,
#   then `litestream replicate -exec` the runtime: litestream ships every commit to S3, forwards
#   SIGTERM to the runtime (which drains and exits 0) and does a final sync before exiting.
#   AGENT_RUNTIME_DB=postgresql://...: no local file, no litestream; the runtime runs alone.
# One writer per tenant: restore and replicate run under the lease keeper (fleet/supervisor/lease.py), which
# takes leases/$TENANT.json in the bucket first (waiting up to 20 s for a dead holder's lease to
# lapse, else refusing to start: exit 75), renews it, kills
# litestream without a final sync if the lease is taken over, and releases it after a clean stop.
#   stage 1 (no argument): checks, app env file, then `exec` the keeper running stage 2;
#   stage 2 (`replicate`): restore if the volume is empty, then `exec litestream replicate`.
# Litestream gets an explicit environment (only the variables below): a stray AWS_CA_BUNDLE or
# AWS_* credential must not change how it talks to S3. The runtime's own environment has no S3
# secret, but this is hygiene, not isolation: it runs as the same uid as tini, the lease keeper
# and Litestream, whose environments (/proc/PID/environ) hold it. Agent code can read the
# bucket credentials: give each tenant its own, scoped to tenants/<t>/ and leases/<t>.json.
set -euo pipefail

DB=/data/tenant.db
TRACKING=/data/.tenant.db-litestream  # Litestream's local state for $DB
CONFIG=/etc/litefleet/litestream.yml
APP_ENV=/tmp/litefleet-app.env
SELF=/opt/litefleet/bin/litefleet-entrypoint
LITESTREAM_VARS=(PATH HOME TENANT LITEFLEET_S3_ENDPOINT LITEFLEET_S3_BUCKET LITEFLEET_S3_REGION
                 LITESTREAM_ACCESS_KEY_ID LITESTREAM_SECRET_ACCESS_KEY)

log() { echo "litefleet-entrypoint: $*" >&2; }
die() { log "$*"; exit 64; }

serve() {
    exec agent-runtime serve --db "$1" --app "${AGENT_RUNTIME_APP:-agent_runtime.examples}" \
        --host 0.0.0.0 --port 8080
}

# Keep only the exported variables named in $@ (run in a subshell or right before exec).
only_env() {
    local keep=" $* " v
    for v in $(compgen -e); do
        [[ "$keep" == *" $v "* ]] || unset "$v"
    done
}

# Stop cleanly when a signal arrives before litestream has replaced this shell.
trap 'exit 143' TERM INT

if [[ "${1:-}" == serve-app ]]; then
    # Started by litestream -exec inside its trimmed environment: switch to the app's.
    only_env
    # shellcheck disable=SC1090
    source "$APP_ENV"
    serve "$DB"
fi

if [[ "${AGENT_RUNTIME_DB:-}" == postgresql://* || "${AGENT_RUNTIME_DB:-}" == postgres://* ]]; then
    unset LITESTREAM_ACCESS_KEY_ID LITESTREAM_SECRET_ACCESS_KEY
    serve "$AGENT_RUNTIME_DB"
fi

for v in TENANT LITEFLEET_S3_ENDPOINT LITEFLEET_S3_BUCKET; do
    [[ -n "${!v:-}" ]] || die "$v is not set"
done
# The tenant name becomes the replica path: no slashes, dots or spaces that could escape it.
[[ "$TENANT" =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] || die "invalid TENANT name (want [a-z0-9][a-z0-9_-]*)"
export LITEFLEET_S3_REGION="${LITEFLEET_S3_REGION:-us-east-1}"

if [[ "${1:-}" != replicate ]]; then
    # The runtime's environment: everything the container got, minus the replica credentials.
    umask 077
    ( unset LITESTREAM_ACCESS_KEY_ID LITESTREAM_SECRET_ACCESS_KEY; export -p ) >"$APP_ENV"
    only_env "${LITESTREAM_VARS[@]}" LITEFLEET_HOST LITEFLEET_LEASE_TTL LITEFLEET_LEASE_RENEW \
        LITEFLEET_LEASE_WAIT
    # -I: never import from the working directory (/data) or PYTHON* variables.
    exec python3 -I -m fleet.supervisor.lease hold -- "$SELF" replicate
fi

# Highest txid in JSON lines on stdin: `litestream status -json` (local_txid) or
# `litestream ltx -json` (max_txid); 0 when there is none.
max_txid() {
    python3 -I -c 'import json, sys
rows = json.load(sys.stdin) or []
print(max([int(r.get(sys.argv[1]) or "0", 16) for r in rows] or [0]))' "$1"
}

if [[ -e "$DB" && -d "$TRACKING" ]]; then
    # Under the lease, the replica is the truth. A database this tenant replicated before
    # (it has Litestream's tracking directory) that is now behind the replica (an old copy
    # on a host that came back, a rolled-back migration, a restored tarball) must not be
    # replicated: Litestream would carry on from it and rewind the backup. Keep it aside and
    # restore instead. A database without tracking was just restored (`fleet restore`,
    # possibly to a point in time on purpose) and is used as it is.
    local_txid=$( (only_env "${LITESTREAM_VARS[@]}"; litestream status -json -config "$CONFIG" "$DB" 2>/dev/null) | max_txid local_txid) || local_txid=0
    replica_txid=$( (only_env "${LITESTREAM_VARS[@]}"; litestream ltx -json -level all -config "$CONFIG" "$DB" 2>/dev/null) | max_txid max_txid) || replica_txid=0
    if (( replica_txid > local_txid )); then
        aside="/data/behind-replica-$(date -u +%Y%m%dT%H%M%SZ)"
        mkdir -p "$aside"
        mv "$DB" "$aside/"
        for f in "$DB-wal" "$DB-shm" "$TRACKING"; do
            [[ -e "$f" ]] && mv "$f" "$aside/"
        done
        log "$DB on the volume is behind the replica (txid $local_txid < $replica_txid): kept it in $aside, restoring"
    else
        log "using $DB from the volume (txid $local_txid, replica $replica_txid)"
    fi
elif [[ -e "$DB" ]]; then
    log "using $DB from the volume (restored, not yet replicated)"
fi

if [[ ! -e "$DB" ]]; then
    t0=$EPOCHREALTIME
    (
        only_env "${LITESTREAM_VARS[@]}"
        exec litestream restore -config "$CONFIG" -if-db-not-exists -if-replica-exists "$DB"
    ) || die "restoring $DB from the replica failed"
    ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
    if [[ -e "$DB" ]]; then
        log "restored $DB from replica tenants/$TENANT in ${ms} ms"
    else
        log "no replica at tenants/$TENANT: starting with an empty database"
        # Create it now (WAL, no tables: the runtime migrates it) so litestream attaches at
        # once instead of after the runtime's first write.
        python3 -c 'import apsw, sys; apsw.Connection(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$DB"
    fi
fi

only_env "${LITESTREAM_VARS[@]}"
exec litestream replicate -config "$CONFIG" -exec "$SELF serve-app"
