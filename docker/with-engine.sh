#!/usr/bin/env bash
# Runs a command with a Docker engine: the one already reachable, or else one this script starts (as root;
# it installs Debian's docker.io first if there is no dockerd) and stops again, by its PID, when the
# command ends. Images stay in the engine's data root (/var/lib/docker) for the next time.
#   docker/with-engine.sh COMMAND [ARG ...]
set -euo pipefail
if docker info >/dev/null 2>&1; then
    exec "$@"
fi
if [ "$(id -u)" != 0 ]; then
    echo "with-engine: no Docker engine answers and only root can start one: start it (e.g. sudo systemctl start docker)" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

log=$(mktemp /tmp/cxrtl-dockerd.XXXXXX.log)
dockerd >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$log" >&2
        echo "with-engine: dockerd stopped while starting (its log: $log)" >&2
        exit 1
    fi
    sleep 1
done
docker info >/dev/null 2>&1 || { echo "with-engine: dockerd did not answer within 60 s (its log: $log)" >&2; exit 1; }
echo "with-engine: started dockerd (pid $pid) for: $*"
"$@"
