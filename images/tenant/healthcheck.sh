#!/bin/bash
# HEALTHCHECK: GET /healthz through bash's /dev/tcp; no interpreter or HTTP client to start.
# The engine runs it as the container's user, root (for the supervisor's first stage): it first
# becomes `nobody` without any capability, so no process holding one runs beside tenant code.
if [[ $EUID == 0 ]]; then
    exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
        --bounding-set=-all -- "$0"
fi
exec 3<>/dev/tcp/127.0.0.1/8080 || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
[[ "$status" == HTTP/1.?" 200"* ]]
