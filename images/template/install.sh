#!/bin/sh
# The build stage of a template image (images/template/Dockerfile), as root, without network:
# install the template's requirements into the runtime's venv from wheels/ and leave in /delta
# exactly the files that adds, plus the app under /app. The runtime's own packages are pinned
# to the versions installed, so a template can add packages but never change one.
set -eu
VENV=/opt/litefleet
CTX=/tmp/build

find "$VENV" -xdev ! -type d | sort >/tmp/before
if grep -q . "$CTX/requirements.txt"; then
    python3 -m venv /tmp/pip  # pip for this stage only: the tenant image has none
    pip() { /tmp/pip/bin/pip --python "$VENV/bin/python" --disable-pip-version-check "$@"; }
    pip freeze --all >/tmp/installed.txt
    pip install -q --no-index --find-links "$CTX/wheels" --no-compile \
        -c /tmp/installed.txt -r "$CTX/requirements.txt"
fi
find "$VENV" -xdev ! -type d | sort >/tmp/installed-after
gone="$(comm -23 /tmp/before /tmp/installed-after | head -n 1)"
if [ -n "$gone" ]; then
    echo "template: the requirements would change the runtime's own files ($gone)" >&2
    exit 1
fi
# Byte code like the tenant image's: unchecked-hash .pyc, valid on a read-only root fs.
comm -13 /tmp/before /tmp/installed-after | grep '\.py$' >/tmp/new-py || true
if [ -s /tmp/new-py ]; then
    python3 -m compileall -q -j0 --invalidation-mode unchecked-hash -i /tmp/new-py >/dev/null
fi
find "$VENV" -xdev ! -type d | sort >/tmp/after
comm -13 /tmp/before /tmp/after | sed 's,^/,,' >/tmp/added

mkdir -p /delta
tar -C / -cf - --no-recursion -T /tmp/added | tar -C /delta -xf -
cp -R "$CTX/app" /delta/app
chown -R 0:0 /delta/app
chmod -R u=rwX,go=rX /delta/app
# A syntax error is reported by the import check that follows the build, in one line.
python3 -m compileall -q -j0 --invalidation-mode unchecked-hash -s /delta /delta/app \
    >/dev/null 2>&1 || true
