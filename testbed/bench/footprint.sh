#!/usr/bin/env bash
# Whole-process footprint of `hostflow run` with the embedded default
# topology: binary size, start-up times, resident memory split into
# anonymous (heap, stacks) and file-backed (the binary's own code pages,
# shared libraries) pages, and CPU share over a window. A measurement, not
# a test: results go to BENCHMARKS.md.
#
#   testbed/bench/footprint.sh [SECONDS] [ROUNDS]    (default 60 s, 1 round)
#   SCRAPE_EVERY=15: /metrics is scraped this often during the window
#   SETTLE=20: seconds from /health ready to the start of the window
#   COLD=1: the binary is dropped from the page cache before each round
#     and read from disk, as after a reboot (0: whatever the cache holds;
#     a freshly linked binary sits in 4 KiB folios, one read from disk in
#     large folios, which Linux ≥ 6.18 maps whole on a fault)
#
# Start to /health ready: from fork/exec until GET /health answers 200.
# Start to first event: until /metrics shows the spool sink has received an
# event (the first /proc scan's rows, or a kernel event), and until it has
# acknowledged one as durable (synced: up to `flush_interval_secs`).
# Idle working set: the pages the agent touched during the window
# (`Referenced` in smaps after clearing the bits at its start), beside RSS,
# which also counts every page start-up touched and the pages the kernel
# mapped around each fault.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_TO_RUN="${1:-60}"
ROUNDS="${2:-1}"
BIN="$(realpath -m "${HOSTFLOW_BIN:-$ROOT/target/release/hostflow}")" # absolute: each round runs in its own directory
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --quiet --bin hostflow)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cp "$BIN" "$WORK/hostflow.stripped"
strip --strip-all "$WORK/hostflow.stripped"
printf 'binary: %s bytes as built, %s bytes stripped (%.1f MiB)\n' \
  "$(stat -c %s "$BIN")" "$(stat -c %s "$WORK/hostflow.stripped")" \
  "$(awk -v b="$(stat -c %s "$WORK/hostflow.stripped")" 'BEGIN { print b / 1048576 }')"

# build.rs links the functions src/code-order/*.txt list (one list per
# build profile) to the front of .text; a dependency or toolchain change
# renames them (their hashes), and testbed/bench/code-order.sh lists them
# again.
for list in "$ROOT"/src/code-order/*.txt; do
  [[ -s "$list" ]] || continue
  present=$(nm --defined-only "$BIN" 2>/dev/null | awk 'NR == FNR { want[$1]; next } ($3 in want) && !seen[$3]++ { n++ } END { print n + 0 }' "$list" -)
  printf 'code order: the binary has %s of the %s functions %s lists\n' "$present" "$(wc -l <"$list")" "${list#"$ROOT"/}"
done

now_ms() { date +%s%3N; }
for ((round = 1; round <= ROUNDS; round++)); do
  RUN="$WORK/run$round"
  mkdir -p "$RUN"
  cd "$RUN"
  # Another agent (a previous round still draining) would answer for this one.
  for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:9598/health || break; sleep 0.1; done
  if [[ "${COLD:-1}" == 1 ]]; then
    sync "$BIN"
    dd if="$BIN" iflag=nocache count=0 status=none
    printf 'round %d: the binary had %s pages in the page cache after dropping it\n' "$round" \
      "$(fincore --noheadings --output PAGES "$BIN" 2>/dev/null || echo '?')"
  fi
  started=$(now_ms)
  "$BIN" run 2>"$RUN/stderr" &
  PID=$!
  ready_ms="" first_ms="" durable_ms=""
  for _ in $(seq 1 3000); do
    now=$(now_ms)
    if [[ -z "$ready_ms" ]] && curl -sf -o /dev/null http://127.0.0.1:9598/health; then ready_ms=$((now - started)); fi
    if [[ -n "$ready_ms" ]]; then
      metrics=$(curl -sf http://127.0.0.1:9598/metrics 2>/dev/null || true)
      if [[ -z "$first_ms" ]] && grep -Eq '^hostflow_component_received_events_total\{component="spool",[^}]*\} [1-9]' <<<"$metrics"; then first_ms=$((now - started)); fi
      if [[ -z "$durable_ms" ]] && grep -Eq '^hostflow_component_sent_events_total\{component="spool",[^}]*\} [1-9]' <<<"$metrics"; then durable_ms=$((now - started)); fi
    fi
    [[ -n "$ready_ms" && -n "$first_ms" && -n "$durable_ms" ]] && break
    if [[ -n "$first_ms" ]]; then sleep 0.1; else sleep 0.005; fi
  done
  # Start-up is excluded from the window: the agent unmaps its start-up
  # code once the binary's resident pages stop growing (at 15 s on an idle
  # host, src/memory.rs), and the window measures the idle state after it.
  sleep "${SETTLE:-20}"
  kill -0 "$PID" 2>/dev/null || { echo "round $round: the agent exited during start-up:" >&2; tail -5 "$RUN/stderr" >&2; exit 1; }
  ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
  echo 1 >"/proc/$PID/clear_refs" 2>/dev/null || true
  t0=$(ticks)
  faults() { awk '{print $10 + $12}' "/proc/$PID/stat"; }
  f0=$(faults)
  # Scraped as Prometheus would, every SCRAPE_EVERY seconds (default 15).
  (while sleep "${SCRAPE_EVERY:-15}"; do curl -sf -o /dev/null http://127.0.0.1:9598/metrics || true; done) &
  SCRAPER=$!
  sleep "$SECONDS_TO_RUN"
  t1=$(ticks)
  f1=$(faults)
  kill "$SCRAPER" 2>/dev/null || true
  referenced_kib=$(awk '/^Referenced:/ { s += $2 } END { print s + 0 }' "/proc/$PID/smaps")
  exe_referenced_kib=$(awk -v exe="$(readlink "/proc/$PID/exe")" '$0 ~ /^[0-9a-f]+-/ { cur = ($6 == exe) } cur && /^Referenced:/ { s += $2 } END { print s + 0 }' "/proc/$PID/smaps")
  status="/proc/$PID/status"
  rss=$(awk '/^VmRSS/ {print $2}' "$status")
  anon=$(awk '/^RssAnon/ {print $2}' "$status")
  file=$(awk '/^RssFile/ {print $2}' "$status")
  shmem=$(awk '/^RssShmem/ {print $2}' "$status")
  # The binary's file-backed pages: its mappings' Rss less the private
  # copies (RELRO, .data), which RssAnon already counts.
  exe_kib=$(awk -v exe="$(readlink "/proc/$PID/exe")" '$0 ~ /^[0-9a-f]+-/ { cur = ($6 == exe) } cur && /^Rss:/ { s += $2 } cur && /^Anonymous:/ { s -= $2 } END { print s + 0 }' "/proc/$PID/smaps")
  ring_kib=$(awk '$0 ~ /^[0-9a-f]+-/ { cur = ($6 == "anon_inode:bpf-map") } cur && /^Rss:/ { s += $2 } END { print s + 0 }' "/proc/$PID/smaps")
  kill -TERM "$PID"
  wait "$PID" || true
  hz=$(getconf CLK_TCK)
  awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$SECONDS_TO_RUN" -v rss="$rss" -v anon="$anon" -v file="$file" \
    -v shmem="$shmem" -v exe="$exe_kib" -v ring="$ring_kib" -v ready="${ready_ms:-?}" -v first="${first_ms:-?}" -v durable="${durable_ms:-?}"  -v faults=$((f1 - f0)) -v refd="$referenced_kib" -v exerefd="$exe_referenced_kib" -v r="$round" \
    'BEGIN { printf "round %d: /health ready %s ms, first event at the spool %s ms, first durable %s ms; window %d s: CPU %.3f%% of one core, %d page faults; RSS %.1f MiB = anon %.1f + file %.1f (of which the binary %.1f, eBPF ring buffer maps %.1f) + shmem %.1f; touched in the window %.1f MiB (of the binary %.1f)\n",
             r, ready, first, durable, s, 100 * d / hz / s, faults, rss / 1024, anon / 1024, file / 1024, exe / 1024, ring / 1024, shmem / 1024, refd / 1024, exerefd / 1024 }'
done
