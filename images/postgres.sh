#!/usr/bin/env bash
# Local PostgreSQL for litefleet's tests and Postgres backend: one cluster under build/pg,
# listening on 127.0.0.1 only. Idempotent; works as root on a fresh Debian 12 machine.
#
#   images/postgres.sh start|stop|status|url
#
# PGPORT overrides the port (default 54329). Database `litefleet`, role `litefleet` (password
# `litefleet`, CREATEDB so tests can make a database each). Loopback-only test credentials.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PGPORT:-54329}"
PGHOME="$REPO/build/pg"
DB=litefleet
ROLE=litefleet
PASSWORD=litefleet
LOG="$PGHOME/postgres.log"

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bindir() {
    # Newest major version first.
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/postgres" ]]; then echo "$d"; fi
}

install_server() {
    [[ $EUID -eq 0 ]] || die "no PostgreSQL server binaries and not root: apt-get install postgresql"
    echo "postgres.sh: installing Debian's postgresql (apt-get)" >&2
    # The package's own cluster may fail to auto-start without an init system: that is fine,
    # we never use it (our cluster lives under build/pg).
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
}

BINDIR="$(find_bindir)"

# initdb/postgres refuse to run as root: as root, the cluster belongs to the `postgres` user.
if [[ $EUID -eq 0 ]]; then
    RUN_AS=(runuser -u postgres --)
else
    RUN_AS=()
fi
# From / : the server's user may not be allowed into the caller's working directory.
as_pg() { (cd / && "${RUN_AS[@]}" "$@"); }

# The data directory must be reachable by the server's user. If a parent directory of the
# repo is closed to `postgres` (say the clone lives under /root), keep the cluster in the
# postgres user's home and link it from build/pg.
resolve_datadir() {
    mkdir -p "$PGHOME"
    DATA="$PGHOME/data"
    SOCK="$PGHOME/run"
    if [[ $EUID -eq 0 ]] && ! runuser -u postgres -- test -x "$PGHOME"; then
        local alt
        alt="/var/lib/postgresql/litefleet-$(printf '%s' "$REPO:$PORT" | md5sum | cut -c1-12)"
        mkdir -p "$alt" && chown postgres: "$alt" && chmod 700 "$alt"
        [[ -L "$DATA" || ! -e "$DATA" ]] || die "$DATA exists but postgres cannot reach it"
        ln -sfn "$alt/data" "$DATA"
        ln -sfn "$alt/postgres.log" "$LOG"
        DATA="$alt/data"
        SOCK="$alt/run"
        LOG="$alt/postgres.log"
    fi
    # Unix socket paths are limited to ~107 bytes.
    if (( ${#SOCK} > 80 )); then SOCK="/tmp/litefleet-pg-$PORT"; fi
}

running() {
    [[ -f "$DATA/postmaster.pid" ]] && as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

ensure_cluster() {
    if [[ -f "$DATA/PG_VERSION" ]]; then return; fi
    echo "postgres.sh: initdb $DATA" >&2
    mkdir -p "$DATA"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$DATA"; fi
    chmod 700 "$DATA"
    as_pg "$BINDIR/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PGHOME/initdb.log" 2>&1 \
        || { cat "$PGHOME/initdb.log" >&2; die "initdb failed"; }
}

configure() {
    # Rewritten every start so PGPORT changes and script updates apply.
    as_pg tee "$DATA/litefleet.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
EOF
    if ! grep -q "^include_if_exists = 'litefleet.conf'" "$DATA/postgresql.conf"; then
        echo "include_if_exists = 'litefleet.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
    fi
    mkdir -p "$SOCK"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$SOCK"; fi
    touch "$LOG"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$LOG"; fi
}

psql_admin() {
    as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"
}

ensure_db() {
    psql_admin -d postgres >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $DB OWNER $ROLE'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
SQL
}

cmd_start() {
    if [[ -z "$BINDIR" ]]; then install_server; BINDIR="$(find_bindir)"; fi
    [[ -n "$BINDIR" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    resolve_datadir
    ensure_cluster
    if ! running; then
        configure
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            die "port $PORT on 127.0.0.1 is taken by another process (set PGPORT)"
        fi
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
            || { tail -n 20 "$LOG" >&2; die "server did not start (log: $LOG)"; }
    fi
    ensure_db
    echo "postgres.sh: running on 127.0.0.1:$PORT (data $DATA)" >&2
}

cmd_stop() {
    [[ -n "$BINDIR" ]] || { echo "postgres.sh: not installed" >&2; return 0; }
    resolve_datadir
    if running; then
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        echo "postgres.sh: stopped" >&2
    else
        echo "postgres.sh: not running" >&2
    fi
}

cmd_status() {
    [[ -n "$BINDIR" ]] || { echo "not installed"; exit 3; }
    resolve_datadir
    if running; then echo "running 127.0.0.1:$PORT"; else echo "stopped"; exit 3; fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB" ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
