#!/usr/bin/env bash
# The MPICH recipe, as a helper:
#   scripts/mpi.sh launch OUT -- MPIEXEC-ARGS...   start a job checkpointable by criu; prints the job's root pid
#   scripts/mpi.sh dump PID DIR                    checkpoint it into DIR (the job stops)
#   scripts/mpi.sh restore DIR WORKDIR -- STAGEGATE-RESTORE-ARGS...
#                                                  restore it through stagegate (verify activator)
# MPICH under CRIU needs: new pid and IPC namespaces with a session of its own
# (setsid), UCX_POSIX_USE_PROC_LINK=n, and criu's --tcp-established
# --ext-unix-sk (plus --ghost-limit on dump) for the launcher's connections.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
criu="$("$here/bin/stagegate" criu-path)"
verb="${1:-}"; shift || true
case "$verb" in
  launch)
    out="$1"; shift; [[ "${1:-}" == "--" ]] && shift
    # the job's output goes to OUT; the launcher itself writes nowhere criu will check
    UCX_POSIX_USE_PROC_LINK=n unshare --pid --ipc --fork setsid \
      sh -c 'out="$1"; shift; exec mpiexec "$@" > "$out" 2>&1' sh "$out" "$@" </dev/null >/dev/null 2>&1 &
    outer=$!
    for _ in $(seq 200); do
      pid="$(cat /proc/$outer/task/*/children 2>/dev/null | tr -d ' \n' || true)"
      [[ -n "$pid" ]] && break
      sleep 0.02
    done
    [[ -n "${pid:-}" ]] || { echo "mpi.sh: the job did not start" >&2; exit 1; }
    # the unshare child is the job's root (pid 1 in its namespace)
    pid="$(cat /proc/$outer/task/$outer/children | awk '{print $1}')"
    echo "$pid"
    ;;
  dump)
    pid="$1"; dir="$2"
    mkdir -p "$dir"
    "$criu" dump -t "$pid" -D "$dir" -o "$dir/../dump.log" --tcp-established --ext-unix-sk --ghost-limit 256M
    ;;
  restore)
    dir="$1"; work="$2"; shift 2; [[ "${1:-}" == "--" ]] && shift
    mkdir -p "$work"
    exec "$here/bin/stagegate" restore "$@" -- -D "$dir" -W "$work" -d -o "$work/restore.log" --pidfile "$work/root.pid" \
      --tcp-established --ext-unix-sk
    ;;
  *)
    sed -n '2,11p' "$0" >&2
    exit 64
    ;;
esac
