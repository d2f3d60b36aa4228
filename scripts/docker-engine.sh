#!/usr/bin/env bash
# Start a private Docker engine for the tests and build the base image they use.
#
# Docker Hub is unreachable on the build machines, so the base image is built here from the
# Debian mirror with debootstrap. Idempotent: packages, engine and image are only set up when
# missing, so CI and developers can call it before every test run.
#
#   scripts/docker-engine.sh          # install, start, build local/debian:bookworm
#   scripts/docker-engine.sh stop     # stop the engine started here
#
# Overridable: AUTOANNOTATOR_DOCKER_STATE (data, logs, pidfile), AUTOANNOTATOR_DOCKER_SOCK,
# AUTOANNOTATOR_BASE_IMAGE.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${AUTOANNOTATOR_DOCKER_STATE:-$ROOT/.ci/state/docker}
SOCK=${AUTOANNOTATOR_DOCKER_SOCK:-$ROOT/.ci/state/docker.sock}
BASE_IMAGE=${AUTOANNOTATOR_BASE_IMAGE:-local/debian:bookworm}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
# Shared libraries the pyenv interpreter (mounted from the host in tests) links against.
INCLUDE=libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,zlib1g,libgomp1,libexpat1,libreadline8,libuuid1,ca-certificates

say() { echo "docker-engine: $*" >&2; }
engine() { docker -H "unix://$SOCK" "$@"; }
answering() { [ -S "$SOCK" ] && engine version >/dev/null 2>&1; }

stop_engine() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        say "stopped dockerd $pid"
    else
        say "no dockerd running from $PIDFILE"
    fi
    rm -f "$PIDFILE" "$SOCK"
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v bwrap >/dev/null || missing+=(bubblewrap)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

start_engine() {
    if answering; then
        say "engine already answering at $SOCK"
        return
    fi
    if [ ${#SOCK} -gt 100 ]; then
        say "socket path too long for a unix socket (${#SOCK} chars): set AUTOANNOTATOR_DOCKER_SOCK"
        exit 1
    fi
    mkdir -p "$STATE" "$(dirname "$SOCK")"
    # A stale pidfile or socket from a killed engine would make dockerd refuse to start.
    if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then rm -f "$PIDFILE"; fi
    rm -f "$SOCK"
    # No bridge and no iptables: containers only ever run with network "none", and the default
    # bridge would add a 172.17/16 network to the host.
    setsid dockerd \
        --data-root "$STATE/data" \
        --exec-root "$STATE/exec" \
        --pidfile "$PIDFILE" \
        -H "unix://$SOCK" \
        --bridge=none --iptables=false --ip-masq=false \
        >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 150); do
        answering && { say "dockerd $(cat "$PIDFILE" 2>/dev/null) answering at $SOCK"; return; }
        sleep 0.2
    done
    say "dockerd did not answer within 30 s; last lines of $LOG:"
    tail -n 20 "$LOG" >&2
    exit 1
}

debian_mirror() {
    local sources=/etc/apt/sources.list.d/debian.sources uri=""
    [ -f "$sources" ] && uri=$(awk '$1 == "URIs:" {print $2; exit}' "$sources")
    echo "${uri:-http://deb.debian.org/debian}"
}

build_base_image() {
    if engine image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "image $BASE_IMAGE present"
        return
    fi
    local rootfs=$STATE/rootfs-bookworm mirror
    mirror=$(debian_mirror)
    say "building $BASE_IMAGE with debootstrap from $mirror (about 40 s)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include="$INCLUDE" bookworm "$rootfs" "$mirror" \
        >"$STATE/debootstrap.log" 2>&1 || {
        tail -n 20 "$STATE/debootstrap.log" >&2
        exit 1
    }
    # Tests mount the host's pyenv interpreter (under /root) and run it as uid 65534: the
    # image's /root must be traversable for that, as on most hosts' /usr/local.
    chmod 0755 "$rootfs/root"
    tar -C "$rootfs" -c . | engine import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "imported $BASE_IMAGE"
}

case "${1:-start}" in
    stop) stop_engine ;;
    start)
        install_packages
        start_engine
        build_base_image
        echo "export DOCKER_HOST=unix://$SOCK"
        ;;
    *) say "usage: $0 [start|stop]"; exit 2 ;;
esac
