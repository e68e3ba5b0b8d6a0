#!/bin/bash
# HEALTHCHECK: GET /healthz through bash's /dev/tcp; no interpreter or HTTP client to start.
exec 3<>/dev/tcp/127.0.0.1/8080 || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
[[ "$status" == HTTP/1.?" 200"* ]]
