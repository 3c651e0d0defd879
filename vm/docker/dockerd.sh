#!/usr/bin/env bash
# Start or stop a docker daemon for the lab's docker tests (CI; a machine without a service
# manager). `start` does nothing when a daemon already answers; otherwise it starts Debian's
# dockerd as root, without iptables or a bridge (containers run with --network none; image builds
# use the host's network), on overlay2, or vfs where overlay2 does not work. `stop` stops only
# the daemon that `start` started (its pid file).
#
#   vm/docker/dockerd.sh start|stop
set -euo pipefail
RUN_DIR=${UKVA_DOCKERD_DIR:-/run/ukva-lab-dockerd}
PID=$RUN_DIR/dockerd.pid

answers() { timeout 10 docker info >/dev/null 2>&1; }

start_with() {  # storage driver
  mkdir -p "$RUN_DIR"
  dockerd --iptables=false --bridge=none --storage-driver="$1" --pidfile "$PID" \
    >"$RUN_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 60); do
    if answers; then echo "dockerd: started (pid $(cat "$PID"), storage $1, log $RUN_DIR/dockerd.log)"; return 0; fi
    kill -0 $! 2>/dev/null || break
    sleep 1
  done
  kill $! 2>/dev/null || true
  wait $! 2>/dev/null || true
  return 1
}

case "${1:-}" in
  start)
    if answers; then echo "dockerd: a daemon already answers; using it"; exit 0; fi
    command -v docker >/dev/null || { echo "dockerd: error: no docker client (apt-get install docker.io)" >&2; exit 1; }
    command -v dockerd >/dev/null || { echo "dockerd: error: no dockerd (apt-get install docker.io)" >&2; exit 1; }
    [ "$(id -u)" -eq 0 ] || { echo "dockerd: error: starting dockerd needs root" >&2; exit 1; }
    start_with overlay2 || start_with vfs || {
      tail -20 "$RUN_DIR/dockerd.log" >&2
      echo "dockerd: error: dockerd did not come up with overlay2 or vfs (log above)" >&2; exit 1; }
    ;;
  stop)
    [ -s "$PID" ] || { echo "dockerd: none started by this script"; exit 0; }
    pid=$(cat "$PID")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "dockerd: stopped (pid $pid)"
    fi
    rm -f "$PID"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
