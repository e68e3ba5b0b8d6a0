#!/usr/bin/env bash
# Local PostgreSQL for litefleet's tests and Postgres backend: one cluster under build/pg.
# Idempotent; works as root on a fresh Debian 12 machine.
#
#   images/postgres.sh start|stop|status|url
#
# PGPORT overrides the port (default 54329). Database `litefleet`, role `litefleet` (CREATEDB,
# so tests can make a database each, and CREATEROLE, so it can be FLEET_PG_ADMIN_URL and make
# each `fleet up --postgres` tenant its role and database) with a random password kept in
# build/pg/password (0600); `url` prints the DSN with it. The server only ever receives that
# password as a SCRAM verifier computed here, never in a statement it could log.
#
# Listens on 127.0.0.1 and, when a Docker engine answers, on the gateway IP of the tenants'
# bridge network `litefleet` (created here as fleet/storage/embedded.py creates it, if missing), so
# `fleet up --db-url` tenants reach it. That gateway is a host address on the bridge, not on
# the host's external interfaces. pg_hba admits loopback and that network's subnet only, with
# password (scram) auth, and a tenant role (a member of `litefleet_tenants`) only to the
# database of its own name. A new gateway restarts a running server (its connections drop).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${PGPORT:-54329}"
PGHOME="$REPO/build/pg"
DB=litefleet
ROLE=litefleet
TENANTS=litefleet_tenants  # fleet/core/names.py PG_TENANT_GROUP
PASSWORD_FILE="$PGHOME/password"
LOG="$PGHOME/postgres.log"
NETWORK=litefleet
GATEWAY=""
SUBNET=""

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

# Sets GATEWAY and SUBNET of the `litefleet` Docker network (left empty without an engine).
tenant_network() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1 || return 0
    if ! docker network inspect "$NETWORK" >/dev/null 2>&1; then
        # Same options as fleet's ensure_tenant_network: no traffic between tenants.
        docker network create -o com.docker.network.bridge.enable_icc=false \
            --label litefleet.managed=true "$NETWORK" >/dev/null 2>&1 || true
    fi
    local cfg
    cfg="$(docker network inspect "$NETWORK" \
        -f '{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{println}}{{end}}' 2>/dev/null \
        | grep -E '^[0-9.]+ [0-9.]+/[0-9]+$' | head -n 1 || true)"
    if [[ -n "$cfg" ]]; then read -r GATEWAY SUBNET <<<"$cfg"; fi
}

# stdin -> file $1 (the server's user owns it) unless it holds that already; 0 when written.
write_if_changed() {
    local new
    new="$(cat)"
    if [[ -f "$1" ]] && [[ "$(as_pg cat "$1")" == "$new" ]]; then return 1; fi
    printf '%s\n' "$new" | as_pg tee "$1" >/dev/null
}

# Rewritten every start so PGPORT, network and script changes apply. Sets RESTART (server
# settings changed) and RELOAD (pg_hba changed).
configure() {
    RESTART=0 RELOAD=0
    tenant_network
    local listen="127.0.0.1" admin_net="" tenant_net="" others_net=""
    if [[ -n "$GATEWAY" ]]; then
        listen="127.0.0.1,$GATEWAY"
        admin_net="host    all $ROLE $SUBNET scram-sha-256"
        tenant_net="host    sameuser +$TENANTS $SUBNET scram-sha-256"
        others_net="host    all all $SUBNET scram-sha-256"
    fi
    write_if_changed "$DATA/litefleet.conf" <<EOF && RESTART=1
listen_addresses = '$listen'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
hba_file = '$DATA/litefleet_hba.conf'
EOF
    write_if_changed "$DATA/litefleet_hba.conf" <<EOF && RELOAD=1
# Written by images/postgres.sh on every start: loopback and the tenants' network only.
local   all all peer
# The fleet's own role (FLEET_PG_ADMIN_URL): every database. First, because it becomes a member
# of the tenant roles it makes, and so of $TENANTS.
host    all $ROLE 127.0.0.1/32 scram-sha-256
host    all $ROLE ::1/128 scram-sha-256
$admin_net
# Tenant roles of \`fleet up --postgres\`: the database of their own name, nothing else.
host    sameuser +$TENANTS 127.0.0.1/32 scram-sha-256
host    sameuser +$TENANTS ::1/128 scram-sha-256
$tenant_net
host    all +$TENANTS all reject
# Other roles.
host    all all 127.0.0.1/32 scram-sha-256
host    all all ::1/128 scram-sha-256
$others_net
EOF
    if ! grep -q "^include_if_exists = 'litefleet.conf'" "$DATA/postgresql.conf"; then
        echo "include_if_exists = 'litefleet.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
        RESTART=1
    fi
    mkdir -p "$SOCK"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$SOCK"; fi
    touch "$LOG"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$LOG"; fi
}

# The role's password: random, made once, readable by the file's owner only.
password() {
    if [[ ! -s "$PASSWORD_FILE" ]]; then
        mkdir -p "$PGHOME"
        (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$PASSWORD_FILE")
    fi
    cat "$PASSWORD_FILE"
}

psql_admin() {
    as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"
}

# The SCRAM-SHA-256 verifier of the password on stdin (what PostgreSQL stores; a statement
# holding it reveals nothing that logs in).
scram_verifier() {
    python3 -I -c '
import base64, hashlib, hmac, os, sys
password, salt, rounds = sys.stdin.read().strip().encode(), os.urandom(16), 4096
salted = hashlib.pbkdf2_hmac("sha256", password, salt, rounds)
client = hmac.new(salted, b"Client Key", "sha256").digest()
server = hmac.new(salted, b"Server Key", "sha256").digest()
b64 = lambda b: base64.b64encode(b).decode()
print(f"SCRAM-SHA-256${rounds}:{b64(salt)}${b64(hashlib.sha256(client).digest())}:{b64(server)}")
'
}

ensure_db() {
    local verifier
    verifier="$(password | scram_verifier)"
    # On stdin, never in argv: not even the verifier shows in a process listing.
    psql_admin -d postgres >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB CREATEROLE;
  END IF;
END \$\$;
ALTER ROLE $ROLE CREATEDB CREATEROLE PASSWORD '$verifier';
SELECT 'CREATE DATABASE $DB OWNER $ROLE'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
SQL
}

cmd_start() {
    if [[ -z "$BINDIR" ]]; then install_server; BINDIR="$(find_bindir)"; fi
    [[ -n "$BINDIR" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    resolve_datadir
    ensure_cluster
    configure
    if ! running; then
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            die "port $PORT on 127.0.0.1 is taken by another process (set PGPORT)"
        fi
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
            || { tail -n 20 "$LOG" >&2; die "server did not start (log: $LOG)"; }
    elif (( RESTART )); then
        # listen_addresses only changes on a restart; open connections are dropped.
        echo "postgres.sh: settings changed (tenant network: ${GATEWAY:-none}): restarting" >&2
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -m fast -w -t 60 restart >/dev/null \
            || { tail -n 20 "$LOG" >&2; die "server did not restart (log: $LOG)"; }
    elif (( RELOAD )); then
        as_pg "$BINDIR/pg_ctl" -D "$DATA" reload >/dev/null
    fi
    ensure_db
    echo "postgres.sh: running on 127.0.0.1:$PORT${GATEWAY:+ and $GATEWAY:$PORT for tenants}" \
        "(data $DATA)" >&2
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
    url)
        [[ -s "$PASSWORD_FILE" ]] || die "no password yet: run \`$0 start\` first"
        echo "postgresql://$ROLE:$(cat "$PASSWORD_FILE")@127.0.0.1:$PORT/$DB"
        ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
