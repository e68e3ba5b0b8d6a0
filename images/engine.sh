#!/usr/bin/env bash
# make engine: a Docker engine that answers `docker info`. Idempotent.
# - DOCKER_HOST set: only check that engine (we never start a daemon we do not own).
# - otherwise, as root on Debian: install docker.io if dockerd is missing, start dockerd in the
#   background (log in build/dockerd.log) and wait for it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOG="$ROOT/build/dockerd.log"
WAIT_S="${ENGINE_WAIT_S:-30}"

die() { echo "engine: $*" >&2; exit 1; }
answers() { docker info >/dev/null 2>&1; }

command -v docker >/dev/null 2>&1 && answers && exit 0

if [[ -n "${DOCKER_HOST:-}" ]]; then
    die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST (start it, or unset DOCKER_HOST)"
fi
[[ "$(id -u)" == 0 ]] || die "no Docker engine answers and starting one needs root (run as root or start dockerd yourself)"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available: install Docker"
    echo "engine: installing Debian's docker.io ..."
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$ROOT/build"
    { apt-get update -q && apt-get install -y -q docker.io; } >"$ROOT/build/apt-docker.log" 2>&1 \
        || { tail -n 20 "$ROOT/build/apt-docker.log" >&2; die "apt-get install docker.io failed"; }
fi

# Start a daemon unless one is already starting (its pid file names a live process).
pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    mkdir -p "$ROOT/build"
    echo "engine: starting dockerd (log: build/dockerd.log)"
    setsid dockerd >"$LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 1 $((WAIT_S * 4))); do
    answers && { echo "engine: docker $(docker version --format '{{.Server.Version}}') ready"; exit 0; }
    sleep 0.25
done
tail -n 20 "$LOG" >&2 2>/dev/null || true
die "dockerd did not answer within ${WAIT_S}s (see build/dockerd.log)"
