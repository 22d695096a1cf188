#!/usr/bin/env bash
# Whole-process footprint of `hostflow run` with the embedded default
# topology: resident memory and CPU share over a window. A measurement, not a
# test: results go to BENCHMARKS.md.
#
#   testbed/bench/footprint.sh [SECONDS]     (default 60)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_TO_RUN="${1:-60}"
BIN="${HOSTFLOW_BIN:-$ROOT/target/release/hostflow}"
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --quiet)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$BIN" run 2>"$WORK/stderr" &
PID=$!
sleep 2 # start-up excluded
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
t0=$(ticks)
sleep "$SECONDS_TO_RUN"
t1=$(ticks)
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
kill -TERM "$PID"
wait "$PID"
hz=$(getconf CLK_TCK)
awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$SECONDS_TO_RUN" -v rss="$rss_kib" \
  'BEGIN { printf "window %d s: CPU %.3f%% of one core, RSS %.1f MiB\n", s, 100 * d / hz / s, rss / 1024 }'
