#!/usr/bin/env bash
# Start a private Docker engine for the tests and build the base image they use.
#
# Docker Hub is unreachable on the build machines, so the base image is built here from the
# Debian mirror with debootstrap. Idempotent: packages, engine and image are only set up when
# missing, so CI and developers can call it before every test run.
#
#   scripts/docker-engine.sh          # install, start, build local/debian:bookworm; prints
#                                     # `export DOCKER_HOST=unix://...` for eval
#   scripts/docker-engine.sh stop     # stop this clone's engine (and one of the old layout)
#   scripts/docker-engine.sh socket   # print this clone's engine socket; no side effects (the
#                                     # tests ask this when DOCKER_HOST is unset)
#   scripts/docker-engine.sh paths    # print every unix socket the engine creates, checked
#
# Layout. A unix socket path holds at most 107 bytes (108 with the NUL), and dockerd puts
# containerd's sockets under its exec root: under a deep clone containerd cannot bind and dockerd
# dies with "timeout waiting for containerd to start". So the runtime state (engine socket, exec
# root, pid file) lives in a short directory of its own per clone,
#   /run/autoannotator-<first 12 hex digits of sha256 of the clone's physical path>
# whatever the clone's path, and every socket path is checked before dockerd starts. Bulky data
# (data root, logs, the debootstrap rootfs) stays in the clone's .ci/state/engine. The name comes
# from the clone's path, so two clones run two engines; neither reuses nor stops the other's.
#
# Overridable: AUTOANNOTATOR_DOCKER_RUN (runtime directory), AUTOANNOTATOR_DOCKER_SOCK,
# AUTOANNOTATOR_DOCKER_STATE (data, logs), AUTOANNOTATOR_BASE_IMAGE.
set -euo pipefail

# The physical path: a clone reached through a symlink is still one clone with one engine.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CLONE_ID=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
RUN=${AUTOANNOTATOR_DOCKER_RUN:-/run/autoannotator-$CLONE_ID}
SOCK=${AUTOANNOTATOR_DOCKER_SOCK:-$RUN/docker.sock}
STATE=${AUTOANNOTATOR_DOCKER_STATE:-$ROOT/.ci/state/engine}
EXEC=$RUN/exec
PIDFILE=$RUN/dockerd.pid
# The containerd dockerd starts for itself writes its pid here and runs with this config.
CONTAINERD_PIDFILE=$EXEC/containerd/containerd.pid
CONTAINERD_CONFIG=$EXEC/containerd/containerd.toml
# Which clone the runtime directory serves: guards against an override (or a hash collision)
# making two clones share one engine.
OWNER=$RUN/clone
# In the clone, not in $RUN: stop removes $RUN, and a lock file must outlive it.
LOCK=$STATE/engine.lock
LOG=$STATE/dockerd.log
# Before the short runtime directory the engine ran from here (data, exec root, pid file, and
# its socket at .ci/state/docker.sock); stop still stops such an engine.
LEGACY=$ROOT/.ci/state/docker
BASE_IMAGE=${AUTOANNOTATOR_BASE_IMAGE:-local/debian:bookworm}
SOCKET_MAX_BYTES=107
# Shared libraries the pyenv interpreter (mounted from the host in tests) links against.
INCLUDE=libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,zlib1g,libgomp1,libexpat1,libreadline8,libuuid1,ca-certificates

say() { echo "docker-engine: $*" >&2; }
engine() { docker -H "unix://$SOCK" "$@"; }
answering() { [ -S "$SOCK" ] && engine version >/dev/null 2>&1; }
# An engine of this clone is the one using this clone's data root.
# dockerd reports its data root with symlinks resolved.
ours() {
    [ "$(engine info --format '{{.DockerRootDir}}' 2>/dev/null)" = "$(realpath -m "$STATE/data")" ]
}

expected_sockets() {
    # Listed with `find $EXEC -type s` while dockerd 20.10 / containerd 1.6 ran a container:
    # metrics.sock, libnetwork/<12 hex digits>.sock, and containerd's three. containerd's shims
    # bind /run/containerd/s/<sha256> (82 bytes, whatever the exec root) and a tty's console
    # socket goes to the temporary folder: neither depends on the clone.
    printf '%s\n' "$SOCK" "$EXEC/metrics.sock" "$EXEC/libnetwork/0123456789ab.sock" \
        "$EXEC/containerd/containerd.sock" "$EXEC/containerd/containerd.sock.ttrpc" \
        "$EXEC/containerd/containerd-debug.sock"
}

check_socket_paths() {
    local path bytes longest="" most=0
    while IFS= read -r path; do
        bytes=$(printf '%s' "$path" | wc -c)
        if [ "$bytes" -gt "$most" ]; then most=$bytes longest=$path; fi
    done < <(expected_sockets)
    if [ "$most" -gt "$SOCKET_MAX_BYTES" ]; then
        say "unix socket path too long: $longest is $most bytes, a unix socket allows" \
            "$SOCKET_MAX_BYTES; set AUTOANNOTATOR_DOCKER_RUN (or AUTOANNOTATOR_DOCKER_SOCK) shorter"
        exit 1
    fi
}

lock() {
    mkdir -p "$STATE"
    exec 9>>"$LOCK"
    # Two test runs of one clone at once would otherwise both start dockerd on one data root.
    flock -w 600 9 || { say "another docker-engine.sh of this clone still holds $LOCK"; exit 1; }
}

# The runtime directory exists, is a directory of ours (an override may point into a shared
# folder such as /tmp) and serves this clone.
claim_run_dir() {
    mkdir -p "$RUN" 2>/dev/null || { say "cannot create $RUN (dockerd needs root)"; exit 1; }
    if [ -L "$RUN" ] || [ ! -O "$RUN" ]; then
        say "$RUN is not a directory owned by $(id -un): set AUTOANNOTATOR_DOCKER_RUN"
        exit 1
    fi
    chmod 0755 "$RUN"
    if [ -s "$OWNER" ] && [ "$(cat "$OWNER")" != "$ROOT" ]; then
        say "$RUN serves the clone at $(cat "$OWNER"), not $ROOT: set AUTOANNOTATOR_DOCKER_RUN"
        exit 1
    fi
    printf '%s\n' "$ROOT" >"$OWNER"
}

# True when pid $1 runs with $2 in its command line: a pid file left by a killed engine may name
# a pid the kernel has since given to another process, or a zombie (whose command line is empty).
runs_with() {
    [ -n "$1" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}
is_dockerd_of() { runs_with "$1" "--pidfile $2 "; }

stop_dockerd() {
    local pidfile=$1 pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    is_dockerd_of "$pid" "$pidfile" || return 1
    kill "$pid"
    # dockerd gives running containers 15 s to stop before it exits.
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "dockerd $pid still running after 40 s: killing it"
        kill -9 "$pid"
    fi
    say "stopped dockerd $pid"
}

# Unmount every mount at or below $1, deepest first, stacked ones too. Lazily where a mount is still busy: nothing of ours uses it now.
unmount_below() {
    local mounts mount
    for _ in $(seq 20); do
        mounts=$(awk -v d="$1" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts |
            sort -r)
        [ -n "$mounts" ] || return 0
        while IFS= read -r mount; do
            umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
        done <<<"$mounts"
    done
    say "could not unmount everything below $1"
}

# What a killed dockerd leaves behind; only called once no engine of this clone runs.
clean_up_after_killed_engine() {
    local pid
    # dockerd stops its containerd; one orphaned by a killed dockerd would keep the exec root.
    pid=$(cat "$CONTAINERD_PIDFILE" 2>/dev/null || true)
    if runs_with "$pid" "$CONTAINERD_CONFIG"; then
        kill "$pid" && say "stopped containerd $pid left by a killed dockerd"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    # Containers of a killed dockerd outlive it in their shims, and a restarted dockerd does not
    # adopt them: end each one's init (its pid namespace goes with it), then the shim.
    for pid in $(pgrep -f -- "-address $EXEC/containerd/containerd.sock" || true); do
        say "ending container shim $pid left by a killed dockerd"
        pkill -KILL -P "$pid" || true
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Mounts that only a clean exit undoes: the data root bind-mounted onto itself (one per
    # start), containers' root filesystems, network namespaces. They would keep the clone and
    # the runtime directory from being deleted.
    unmount_below "$STATE/data"
    unmount_below "$EXEC"
}

stop_engine() {
    if [ -s "$OWNER" ] && [ "$(cat "$OWNER")" != "$ROOT" ]; then
        say "$RUN serves the clone at $(cat "$OWNER"), not $ROOT: left alone"
        exit 1
    fi
    lock
    stop_dockerd "$PIDFILE" || say "no dockerd of this clone running ($PIDFILE)"
    if stop_dockerd "$LEGACY/dockerd.pid"; then
        rm -f "$LEGACY/dockerd.pid" "$ROOT/.ci/state/docker.sock"
    fi
    if pgrep -f -- "--data-root $STATE/data " >/dev/null; then
        say "a dockerd on $STATE/data still runs without its pid file: left alone"
        exit 1
    else
        clean_up_after_killed_engine
    fi
    # A socket nothing answers on is stale; one that answers is another engine's (an override).
    if [ -S "$SOCK" ] && ! answering; then rm -f "$SOCK"; fi
    rm -f "$PIDFILE" "$OWNER"
    # Only what this script made: $RUN may be overridden to a shared folder. --one-file-system:
    # never into a mount that could not be undone.
    if [ -d "$EXEC" ]; then
        rm -rf --one-file-system "$EXEC" 2>/dev/null || say "left $EXEC (a mount of a killed engine)"
    fi
    rmdir "$RUN" 2>/dev/null || true
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
    local pid
    claim_run_dir
    mkdir -p "$(dirname "$SOCK")"
    if answering; then
        if ours; then
            say "engine of this clone already answering at $SOCK"
            return
        fi
        say "$SOCK answers, but with data root $(engine info --format '{{.DockerRootDir}}')," \
            "not this clone's $STATE/data: left alone; set AUTOANNOTATOR_DOCKER_SOCK"
        exit 1
    fi
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if is_dockerd_of "$pid" "$PIDFILE"; then
        say "dockerd $pid of this clone runs but does not answer at $SOCK:" \
            "scripts/docker-engine.sh stop, then start again"
        exit 1
    fi
    # Stale state of a killed engine: dockerd refuses a pid file naming a live process, and the
    # old socket file would look like an engine.
    rm -f "$PIDFILE" "$SOCK"
    # dockerd reuses the containerd its pid file names if that pid is alive, a zombie or another
    # process included, then times out waiting for it: keep it only when it is our containerd
    # (an orphan of a killed dockerd, which dockerd then rightly reuses).
    pid=$(cat "$CONTAINERD_PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && ! runs_with "$pid" "$CONTAINERD_CONFIG"; then
        rm -f "$CONTAINERD_PIDFILE"
    fi
    # No bridge and no iptables: containers only ever run with network "none", and the default
    # bridge would add a 172.17/16 network to the host. fd 9 (the lock) is closed for dockerd,
    # which would otherwise hold it for its whole life.
    setsid dockerd \
        --data-root "$STATE/data" \
        --exec-root "$EXEC" \
        --pidfile "$PIDFILE" \
        -H "unix://$SOCK" \
        --bridge=none --iptables=false --ip-masq=false \
        >"$LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    for _ in $(seq 150); do
        answering && { say "dockerd $pid answering at $SOCK"; return; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    say "dockerd did not answer at $SOCK within 30 s; last lines of $LOG:"
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
    socket) echo "$SOCK" ;;
    paths)
        check_socket_paths
        expected_sockets
        ;;
    stop) stop_engine ;;
    start)
        # Before anything is installed or started: a path that cannot work fails at once.
        check_socket_paths
        install_packages
        lock
        start_engine
        build_base_image
        echo "export DOCKER_HOST=unix://$SOCK"
        ;;
    *)
        say "usage: $0 [start|stop|socket|paths]"
        exit 2
        ;;
esac
