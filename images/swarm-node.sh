#!/usr/bin/env bash
# Prepare one Docker Swarm node for litefleet tenants; run it as root on every node, once
# (idempotent). `images/swarm.sh up` runs it on both nodes of the test swarm.
#
#   images/swarm-node.sh prepare SUBNET    e.g. 10.240.1.0/24, a /24 no other network uses here
#   images/swarm-node.sh unprepare
#
# 1. A config-only network `litefleet-swarm-config` on this node's engine: tenants' bridge
#    `lfsw0`, traffic between its containers dropped (enable_icc=false). The fleet's swarm
#    network `litefleet-swarm` takes its options from it on every node (`--config-from`);
#    without it, options given to a swarm-scoped bridge are dropped (docs/swarm.md).
# 2. Two firewall rules: a container on lfsw0 may not open a connection to the tenant API port
#    range (FLEET_SWARM_PORTS, default 30000-32767) on any address: not on this node (INPUT:
#    docker-proxy answers there), not on another node (DOCKER-USER: forwarded traffic). The
#    fleet on the manager, and the gateway, reach every tenant's port; tenants reach none.
# DOCKER_HOST selects the engine, as for the docker CLI. Rules carry the comment
# "litefleet-swarm" and are only ever added or removed as a whole.
set -euo pipefail
CONFIG_NET=litefleet-swarm-config
BRIDGE=lfsw0
PORTS="${FLEET_SWARM_PORTS:-30000-32767}"
PORTS="${PORTS/-/:}"
COMMENT=litefleet-swarm

die() { echo "swarm-node.sh: $*" >&2; exit 1; }

rules() {
    local op="$1" chain
    for chain in INPUT DOCKER-USER; do
        # shellcheck disable=SC2046
        iptables -w "$op" "$chain" -i "$BRIDGE" -p tcp --dport "$PORTS" \
            -m conntrack --ctstate NEW -m comment --comment "$COMMENT" -j DROP 2>/dev/null || true
    done
}

has_rule() {
    iptables -w -C INPUT -i "$BRIDGE" -p tcp --dport "$PORTS" \
        -m conntrack --ctstate NEW -m comment --comment "$COMMENT" -j DROP 2>/dev/null
}

case "${1:-}" in
    prepare)
        subnet="${2:-}"
        [[ -n "$subnet" ]] || die "usage: $0 prepare SUBNET"
        [[ "$(id -u)" == 0 ]] || die "needs root (iptables)"
        if ! docker network inspect "$CONFIG_NET" >/dev/null 2>&1; then
            docker network create --config-only --subnet "$subnet" \
                -o com.docker.network.bridge.enable_icc=false \
                -o com.docker.network.bridge.name="$BRIDGE" \
                --label litefleet.managed=true "$CONFIG_NET" >/dev/null
        fi
        iptables -w -nL DOCKER-USER >/dev/null 2>&1 || iptables -w -N DOCKER-USER
        has_rule || rules -I
        ;;
    unprepare)
        rules -D
        docker network rm "$CONFIG_NET" >/dev/null 2>&1 || true
        ;;
    *) echo "usage: $0 prepare SUBNET | unprepare" >&2; exit 2 ;;
esac
