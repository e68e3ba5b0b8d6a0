#!/usr/bin/env bash
# make browser: Debian's chromium and chromium-driver for the web console's browser tests
# (tests/test_console_browser.py drives /usr/bin/chromium through /usr/bin/chromedriver).
# Idempotent; no browser is ever downloaded by a test tool.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "browser: $*" >&2; exit 1; }

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
[[ "$(id -u)" == 0 ]] || die "chromium and chromium-driver are missing and installing them needs root"
command -v apt-get >/dev/null 2>&1 || die "chromium is missing and apt-get is not available: install chromium and chromium-driver"
echo "browser: installing Debian's chromium and chromium-driver ..."
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$ROOT/build"
{ apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver; } \
    >"$ROOT/build/apt-browser.log" 2>&1 \
    || { tail -n 20 "$ROOT/build/apt-browser.log" >&2; die "apt-get install chromium chromium-driver failed"; }
echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) ready"
