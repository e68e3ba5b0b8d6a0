#!/usr/bin/env bash
# A two-node Docker Swarm on this one machine, for litefleet's Swarm tests and benchmarks.
#
#   images/swarm.sh up|down|status|env|kill-node2|kill-engine2|start-node2|partition|heal
#
# Node 1 is the engine `docker` talks to (the manager, advertised on 10.251.0.1). Node 2 is a
# second dockerd in a network namespace of its own (10.251.0.2, over a veth pair), so the swarm
# ports 2377/7946/4789 do not collide; it is a worker. Recipe and facts:
# /work/shared/notes/environment.md ("Docker Swarm with two nodes on one machine") and
# docs/swarm.md.
#
# up           idempotent: namespace, node 2's dockerd, `swarm init` on node 1 (only when it is in
#              no swarm), node 2 joined, both nodes labelled, images copied to node 2
#              (docker save | load, only those node 2 lacks). Prints the env lines of `env`.
# down         idempotent: every service and secret of the swarm, the volumes and containers of
#              litefleet tenants on node 1 that the swarm made, `swarm leave --force` on both,
#              node 2's dockerd stopped, its data removed, the namespace deleted, docker_gwbridge
#              removed from node 1. Refuses to touch a swarm this script did not make.
# kill-node2   node 2 dies: SIGKILL its dockerd, containerd, shims and every container process
#              (SIGKILL of dockerd alone leaves its containers running: see docs/swarm.md).
# kill-engine2 SIGKILL node 2's dockerd only.
# start-node2  start node 2's dockerd again (after kill-node2 or kill-engine2).
# partition    cut node 2 off from the manager only: drop swarm traffic (2377/tcp, 7946/tcp+udp,
#              4789/udp) between 10.251.0.1 and 10.251.0.2, inside node 2's namespace; everything
#              else (the object store, tenant ports) still flows.
# heal         remove those rules.
#
# SWARM_HEARTBEAT (say 1s) sets the dispatcher heartbeat period on `up`: a node is declared
# down after about three periods without one (Swarm's default, 5s, gives ~15 s).
# SWARM_IMAGES (default: litefleet/tenant:$TAG litefleet/s3:$TAG) are the images node 2 gets.
# Everything lives under /tmp/lf-swarm (short: unix socket paths are limited to ~107 bytes).
# Needs root, dockerd, ip (iproute2) and iptables; says why and exits 3 when it cannot run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)"
TAG="${LITEFLEET_IMAGE_TAG:-$VERSION}"
SWARM_IMAGES="${SWARM_IMAGES:-litefleet/tenant:$TAG litefleet/s3:$TAG}"

DIR=/tmp/lf-swarm
NS=lfn2
VETH_HOST=lfv-h
VETH_NODE=lfv-n
IP1=10.251.0.1
IP2=10.251.0.2
SOCK2="$DIR/docker.sock"
PID2="$DIR/docker.pid"
LOG2="$DIR/dockerd.log"
# Node 2's own bridges come from ranges nothing on node 1 uses, so a container on node 2 reaches
# node 1's addresses (the tenants' bridge gateway 172.18.0.1, where the embedded store and
# PostgreSQL listen) through the default route instead of a local bridge of the same subnet.
BIP2=10.253.0.1/24
POOL2=10.254.0.0/16
# Overlay networks (the swarm's ingress) take their subnets from here, away from 10.0.0.0/8's
# usual 10.0.x.
SWARM_POOL=10.252.0.0/16
# Marks the swarm as ours: node 1's label, checked before `down` leaves a swarm.
OWNER_LABEL=litefleet.test-swarm
LOCK=/run/lock/litefleet-swarm.lock
# Node 2's containers live under this cgroup, so that "the node dies" can kill exactly them.
CGROUP2=/lf-node2
WAIT_S="${SWARM_WAIT_S:-60}"

die() { echo "swarm.sh: $*" >&2; exit 1; }
cannot() { echo "swarm.sh: cannot run here: $*" >&2; exit 3; }
log() { echo "swarm.sh: $*" >&2; }
d2() { docker -H "unix://$SOCK2" "$@"; }
node2_answers() { [[ -S "$SOCK2" ]] && d2 info >/dev/null 2>&1; }
node2_pid() { cat "$PID2" 2>/dev/null || true; }
# A killed dockerd may linger as a zombie here (PID 1 of these machines reaps orphans late).
alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null \
        && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}
state1() { docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null; }
state2() { d2 info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

preflight() {
    [[ "$(id -u)" == 0 ]] || cannot "needs root (network namespaces, a second dockerd)"
    local c
    for c in docker dockerd ip iptables flock; do
        command -v "$c" >/dev/null 2>&1 || cannot "$c is missing"
    done
    docker info >/dev/null 2>&1 || cannot "no Docker engine answers (make engine)"
}

# Node 1's swarm: "ours" (made by this script), "none", or "foreign".
swarm1_owner() {
    local st
    st="$(state1)"
    [[ "$st" == inactive ]] && { echo none; return; }
    if [[ "$(docker info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null)" == true ]] \
        && [[ "$(docker node inspect self -f "{{index .Spec.Labels \"$OWNER_LABEL\"}}" 2>/dev/null)" == true ]]; then
        echo ours
    else
        echo foreign
    fi
}

ensure_netns() {
    if ! ip netns list | grep -qw "$NS"; then
        log "network namespace $NS ($IP2) over $VETH_HOST ($IP1)"
        ip netns add "$NS"
    fi
    if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
        ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
        ip link set "$VETH_NODE" netns "$NS"
    fi
    ip addr replace "$IP1/24" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip netns exec "$NS" ip addr replace "$IP2/24" dev "$VETH_NODE"
    ip netns exec "$NS" ip link set "$VETH_NODE" up
    ip netns exec "$NS" ip link set lo up
    ip netns exec "$NS" ip route replace default via "$IP1"
}

write_start_script() {
    mkdir -p "$DIR"
    cat >"$DIR/start-node2.sh" <<EOF
#!/bin/sh
# Run through \`ip netns exec $NS\`: a new mount namespace whose /sys is the namespace's own,
# without the cgroup mounts dockerd needs ("Devices cgroup isn't mounted"). Mount them again,
# and give node 2 a private /run so its /var/run/docker.sock is its own, as on a real host.
set -e
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
    mkdir -p /sys/fs/cgroup/\$c
    mount -t cgroup -o \$c cgroup /sys/fs/cgroup/\$c 2>/dev/null || rmdir /sys/fs/cgroup/\$c
done
mkdir -p /sys/fs/cgroup/systemd
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t tmpfs -o mode=755 run /run
mkdir -p /run/lock
exec dockerd --data-root $DIR/data --exec-root $DIR/exec --pidfile $PID2 \\
    -H unix:///var/run/docker.sock -H unix://$SOCK2 \\
    --bip $BIP2 --default-address-pool base=$POOL2,size=24 --cgroup-parent $CGROUP2
EOF
    chmod +x "$DIR/start-node2.sh"
}

start_node2() {
    node2_answers && return 0
    alive "$(node2_pid)" || {
        write_start_script
        log "starting node 2's dockerd (log: $LOG2)"
        ip netns exec "$NS" setsid "$DIR/start-node2.sh" >>"$LOG2" 2>&1 </dev/null 9>&- &
    }
    local _
    for _ in $(seq 1 $((WAIT_S * 4))); do
        node2_answers && return 0
        sleep 0.25
    done
    tail -n 20 "$LOG2" >&2 || true
    die "node 2's dockerd did not answer within ${WAIT_S}s ($LOG2)"
}

ensure_swarm() {
    case "$(swarm1_owner)" in
        foreign) cannot "this engine is already in a swarm that images/swarm.sh did not make" ;;
        none)
            log "swarm init on node 1 (advertise $IP1)"
            docker swarm init --advertise-addr "$IP1" --listen-addr "$IP1:2377" \
                --default-addr-pool "$SWARM_POOL" >/dev/null
            docker node update --label-add "$OWNER_LABEL=true" "$(docker info -f '{{.Swarm.NodeID}}')" >/dev/null ;;
        ours) ;;
    esac
    if [[ -n "${SWARM_HEARTBEAT:-}" ]]; then
        docker swarm update --dispatcher-heartbeat "$SWARM_HEARTBEAT" >/dev/null
    fi
    local cluster st2
    cluster="$(docker info -f '{{.Swarm.Cluster.ID}}')"
    st2="$(state2)"
    if [[ "$st2" != inactive && "$(d2 info -f '{{.Swarm.Cluster.ID}}' 2>/dev/null)" != "$cluster" ]]; then
        # Node 2 may report no cluster id as a worker; trust its manager address instead.
        if ! d2 info -f '{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}' | grep -q "$IP1:2377"; then
            d2 swarm leave --force >/dev/null 2>&1 || true
            st2=inactive
        fi
    fi
    if [[ "$st2" == inactive ]]; then
        log "node 2 joins as a worker"
        d2 swarm join --token "$(docker swarm join-token -q worker)" \
            --advertise-addr "$IP2" --listen-addr "$IP2:2377" "$IP1:2377" >/dev/null
    fi
    local id2 _
    id2="$(d2 info -f '{{.Swarm.NodeID}}')"
    for _ in $(seq 1 $((WAIT_S * 4))); do
        [[ "$(docker node inspect "$id2" -f '{{.Status.State}}' 2>/dev/null)" == ready ]] && break
        sleep 0.25
    done
    # Stale entries of earlier node-2 incarnations (down, never coming back).
    local n
    for n in $(docker node ls -q); do
        [[ "$n" == "$id2" || "$n" == "$(docker info -f '{{.Swarm.NodeID}}')" ]] && continue
        [[ "$(docker node inspect "$n" -f '{{.Status.State}}')" == down ]] && docker node rm --force "$n" >/dev/null 2>&1 || true
    done
}

copy_images() {
    local img id1 id2
    for img in $SWARM_IMAGES; do
        id1="$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null)" \
            || die "image $img is missing on node 1 (make images)"
        id2="$(d2 image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)"
        [[ "$id1" == "$id2" ]] && continue
        log "copying $img to node 2"
        docker save "$img" | d2 load -q >/dev/null
    done
}

# Each node's firewall rules for tenants (images/swarm-node.sh). On node 1, this machine's
# engine, they only match traffic from docker0 to the tenant port range and to port 8080 of
# another docker0 container; `down` removes them.
prepare_nodes() {
    local node_script="$ROOT/images/swarm-node.sh"
    bash "$node_script" prepare
    ip netns exec "$NS" bash "$node_script" prepare
}

print_env() {
    echo "SWARM_NODE2_HOST=unix://$SOCK2"
    echo "SWARM_NODE1_ID=$(docker info -f '{{.Swarm.NodeID}}')"
    echo "SWARM_NODE2_ID=$(d2 info -f '{{.Swarm.NodeID}}' 2>/dev/null)"
    echo "SWARM_NODE1_ADDR=$IP1"
    echo "SWARM_NODE2_ADDR=$IP2"
}

cmd_up() {
    preflight
    exec 9>"$LOCK"
    flock -w 300 9 || die "another swarm.sh holds $LOCK"
    ensure_netns
    start_node2
    ensure_swarm
    prepare_nodes
    copy_images
    print_env
}

stop_node2() {
    local pid _
    pid="$(node2_pid)"
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 80); do alive "$pid" || return 0; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
}

# Containers of node 2 that outlive a SIGKILLed dockerd (their shims) and its containerd.
kill_node2_leftovers() {
    local p
    for p in $(pgrep -f -- "$DIR/" || true); do
        [[ "$p" == "$$" ]] && continue
        kill -KILL "$p" 2>/dev/null || true
    done
}

cmd_down() {
    preflight
    exec 9>"$LOCK"
    flock -w 300 9 || die "another swarm.sh holds $LOCK"
    local owner
    owner="$(swarm1_owner)"
    [[ "$owner" == foreign ]] && cannot "this engine is in a swarm that images/swarm.sh did not make; not touching it"
    if [[ "$owner" == ours ]]; then
        local s
        for s in $(docker service ls -q); do docker service rm "$s" >/dev/null 2>&1 || true; done
        for s in $(docker secret ls -q); do docker secret rm "$s" >/dev/null 2>&1 || true; done
        # Containers of removed services go away asynchronously.
        local _
        for _ in $(seq 1 80); do
            [[ -z "$(docker ps -aq --filter label=com.docker.swarm.service.id)" ]] && break
            sleep 0.25
        done
    fi
    # Volumes the swarm's tasks made on node 1 (tenants' volumes carry the label).
    local v
    for v in $(docker volume ls -q --filter label=litefleet.swarm=true); do
        docker volume rm -f "$v" >/dev/null 2>&1 || true
    done
    if node2_answers; then d2 swarm leave --force >/dev/null 2>&1 || true; fi
    [[ "$owner" == ours ]] && docker swarm leave --force >/dev/null
    # Node 1's tenant rules (node 2's go with its namespace).
    bash "$ROOT/images/swarm-node.sh" unprepare
    stop_node2
    kill_node2_leftovers
    if ip netns list | grep -qw "$NS"; then
        ip netns exec "$NS" true 2>/dev/null && ip netns pids "$NS" | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$NS"
    fi
    ip link del "$VETH_HOST" >/dev/null 2>&1 || true
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
    if [[ -d "$DIR" ]]; then
        umount -R "$DIR/data" >/dev/null 2>&1 || true
        umount -R "$DIR/exec" >/dev/null 2>&1 || true
        rm -rf "$DIR"
    fi
    log "down"
}

cmd_status() {
    echo "node 1 swarm: $(state1 || echo '?') ($(swarm1_owner 2>/dev/null || echo '?'))"
    if node2_answers; then echo "node 2: up, swarm $(state2)"; else echo "node 2: down"; fi
    if [[ "$(state1)" == active ]]; then docker node ls; fi
}

cmd_kill_engine2() {
    local pid
    pid="$(node2_pid)"
    alive "$pid" || die "node 2's dockerd is not running"
    kill -KILL "$pid"
}

cmd_kill_node2() {
    cmd_kill_engine2
    kill_node2_leftovers
    local f p
    for f in /sys/fs/cgroup/pids$CGROUP2/*/cgroup.procs; do
        [[ -f "$f" ]] || continue
        for p in $(cat "$f"); do kill -KILL "$p" 2>/dev/null || true; done
    done
}

# The swarm's control traffic between the two nodes, as iptables matches.
SWARM_PORTS=("-p tcp --dport 2377" "-p tcp --sport 2377" "-p tcp --dport 7946" "-p tcp --sport 7946"
             "-p udp --dport 7946" "-p udp --sport 7946" "-p udp --dport 4789")
partition_rules() {
    local op="$1" m
    for m in "${SWARM_PORTS[@]}"; do
        # shellcheck disable=SC2086
        ip netns exec "$NS" iptables -w "$op" INPUT -i "$VETH_NODE" -s "$IP1" $m -j DROP 2>/dev/null || true
        # shellcheck disable=SC2086
        ip netns exec "$NS" iptables -w "$op" OUTPUT -o "$VETH_NODE" -d "$IP1" $m -j DROP 2>/dev/null || true
    done
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) print_env ;;
    kill-node2) cmd_kill_node2 ;;
    kill-engine2) cmd_kill_engine2 ;;
    start-node2) preflight; start_node2 ;;
    partition) preflight; partition_rules -D; partition_rules -I ;;
    heal) preflight; partition_rules -D ;;
    *) echo "usage: $0 up|down|status|env|kill-node2|kill-engine2|start-node2|partition|heal" >&2; exit 2 ;;
esac
