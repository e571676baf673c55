#!/usr/bin/env bash
# time-runs.sh N CMD...: runs CMD N times the way criu runs an action script
# (fork+exec, stdin closed) and prints each run's wall time in microseconds.
# STAGEGATE_SESSION is made unique per run from SESSION_PREFIX when set.
n=$1; shift
for ((i = 0; i < n; i++)); do
  [[ -n "${SESSION_PREFIX:-}" ]] && export STAGEGATE_SESSION="$SESSION_PREFIX-$i"
  s=$EPOCHREALTIME
  "$@" </dev/null >/dev/null 2>&1 || echo "run $i failed" >&2
  e=$EPOCHREALTIME
  echo $(( 10#${e/./} - 10#${s/./} ))
done
