#!/usr/bin/env bash
# Prepare one Docker Swarm node for litefleet tenants; run it as root on every node, once
# (idempotent). `images/swarm.sh up` runs it on both nodes of the test swarm.
#
#   images/swarm-node.sh prepare|unprepare
#
# Tenant tasks join the node's default bridge (docker0). Not a swarm-scoped bridge network:
# after a node crashes, such a network's tasks are rejected on that node ("network <id> exists",
# moby/moby#37087, still open; reproduced here, and neither a clean restart nor deleting the
# bridge repaired it). Three firewall rules keep tenants away from each other's API:
#   - INPUT:       a container on docker0 may not connect to the tenant port range
#                  (FLEET_SWARM_PORTS, default 30000-32767) on this node (docker-proxy serves
#                  published ports there);
#   - DOCKER-USER: nor to that range on another node (forwarded traffic);
#   - DOCKER-USER: nor to port 8080 of another container on docker0 (what enable_icc=false
#                  would do, for the tenant API only).
# The fleet on the manager, and the gateway, reach every tenant's port; tenants reach none.
# Rules carry the comment "litefleet-swarm"; they are added and removed as a whole. On a node
# that also runs other containers on docker0, they apply to those too (ports above only).
set -euo pipefail
BRIDGE="${SWARM_TENANT_BRIDGE:-docker0}"
PORTS="${FLEET_SWARM_PORTS:-30000-32767}"
PORTS="${PORTS/-/:}"
API_PORT=8080
COMMENT=litefleet-swarm

die() { echo "swarm-node.sh: $*" >&2; exit 1; }

# Each rule as "CHAIN MATCH..." (the common tail is added below).
RULES=(
    "INPUT -i $BRIDGE -p tcp --dport $PORTS"
    "DOCKER-USER -i $BRIDGE -p tcp --dport $PORTS"
    "DOCKER-USER -i $BRIDGE -o $BRIDGE -p tcp --dport $API_PORT"
)
TAIL=(-m conntrack --ctstate NEW -m comment --comment "$COMMENT" -j DROP)

rule() {
    local op="$1" chain rest
    read -r chain rest <<<"$2"
    # shellcheck disable=SC2086
    iptables -w "$op" "$chain" $rest "${TAIL[@]}"
}

case "${1:-}" in
    prepare)
        [[ "$(id -u)" == 0 ]] || die "needs root (iptables)"
        iptables -w -nL DOCKER-USER >/dev/null 2>&1 \
            || die "no DOCKER-USER chain: start dockerd first"
        for r in "${RULES[@]}"; do
            rule -C "$r" 2>/dev/null || rule -I "$r"
        done
        ;;
    unprepare)
        for r in "${RULES[@]}"; do
            while rule -C "$r" 2>/dev/null; do rule -D "$r"; done
        done
        ;;
    *) echo "usage: $0 prepare|unprepare" >&2; exit 2 ;;
esac
