#!/usr/bin/env bash
# Cost per process of one look at every process, on the same host in the
# same run, with the same ~1000 extra `sleep` processes alive:
#   - hostflow's procfs scanner (benches/procfs.rs, steady and cold scans),
#   - `ps -e -o pid,ppid,pcpu,rss,comm` (wall and CPU per run),
#   - Debian's prometheus-process-exporter (CPU per scrape, from its own
#     /proc/PID/stat), installed with apt-get when missing and root.
# A measurement, not a test: results go to BENCHMARKS.md.
#
#   testbed/bench/procfs_compare.sh [N_SLEEPERS] [RUNS]     (default 1000, 20)
#   PROCFS_COMPARE_SKIP_HOSTFLOW=1 skips the (slower) cargo bench part.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
N_SLEEPERS="${1:-1000}"
RUNS="${2:-20}"
PORT="${PROCFS_COMPARE_PORT:-19256}"
WORK="$(mktemp -d)"
SLEEPER_PIDS=()
EXPORTER_PID=""

cleanup() {
  [[ -n "$EXPORTER_PID" ]] && kill "$EXPORTER_PID" 2>/dev/null || true
  if ((${#SLEEPER_PIDS[@]})); then
    kill "${SLEEPER_PIDS[@]}" 2>/dev/null || true
    wait "${SLEEPER_PIDS[@]}" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
n_processes() { ls -f /proc | grep -c '^[0-9]'; }
hz=$(getconf CLK_TCK)

for ((i = 0; i < N_SLEEPERS; i++)); do
  sleep 600 &
  SLEEPER_PIDS+=($!)
done
sleep 0.5
echo "host: $(nproc) CPUs, $(uname -r); $N_SLEEPERS extra sleepers; $(n_processes) processes in /proc"

# --- ps ---------------------------------------------------------------------
ps_wall=()
for ((i = 0; i < RUNS; i++)); do
  procs=$(n_processes)
  t0=$(date +%s%N)
  ps -e -o pid,ppid,pcpu,rss,comm >/dev/null
  t1=$(date +%s%N)
  ps_wall+=("$(awk -v ns=$((t1 - t0)) -v n="$procs" 'BEGIN { printf "%.3f", ns / 1000 / n }')")
done
ps_wall_us=$(printf '%s\n' "${ps_wall[@]}" | median)
ps_procs=$(n_processes)
# CPU of RUNS runs, from the children times of a subshell that only runs ps.
ps_cpu_s=$( (for ((i = 0; i < RUNS; i++)); do ps -e -o pid,ppid,pcpu,rss,comm >/dev/null; done; times) |
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
ps_cpu_us=$(awk -v c="$ps_cpu_s" -v r="$RUNS" -v n="$(n_processes)" 'BEGIN { printf "%.3f", c * 1e6 / r / n }')

# --- prometheus-process-exporter --------------------------------------------
exporter_row="prometheus-process-exporter | not measured | | |"
EXPORTER=/usr/bin/prometheus-process-exporter
if [[ ! -x "$EXPORTER" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing prometheus-process-exporter (apt-get) ..."
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-process-exporter >"$WORK/apt.log" 2>&1; then
      echo "could not install prometheus-process-exporter: $(tail -1 "$WORK/apt.log")"
    fi
  else
    echo "prometheus-process-exporter is not installed and this is not root with apt-get: skipped"
  fi
fi
if [[ -x "$EXPORTER" ]]; then
  # One group per comm, every process matched (kernel threads, with an
  # empty command line, included).
  cat >"$WORK/exporter.yml" <<'EOF'
process_names:
  - name: "{{.Comm}}"
    cmdline:
    - '.*'
EOF
  "$EXPORTER" -config.path "$WORK/exporter.yml" -web.listen-address "127.0.0.1:$PORT" >"$WORK/exporter.log" 2>&1 &
  EXPORTER_PID=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null; then
    ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$EXPORTER_PID/stat"; }
    curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null # warm-up: first sighting of every process
    procs=$(n_processes)
    t0=$(ticks)
    w0=$(date +%s%N)
    for ((i = 0; i < RUNS; i++)); do
      curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null
    done
    w1=$(date +%s%N)
    t1=$(ticks)
    exporter_cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v r="$RUNS" -v n="$procs" \
      'BEGIN { printf "%.1f", d / hz * 1e6 / r / n }')
    exporter_wall_us=$(awk -v ns=$((w1 - w0)) -v r="$RUNS" -v n="$procs" 'BEGIN { printf "%.1f", ns / 1000 / r / n }')
    groups=$(curl -sf "http://127.0.0.1:$PORT/metrics" | grep -c '^namedprocess_namegroup_num_procs' || true)
    exporter_row="prometheus-process-exporter $(dpkg-query -W -f '${Version}' prometheus-process-exporter 2>/dev/null), CPU per scrape ($RUNS scrapes, $groups groups) | $exporter_wall_us (scrape wall) | $exporter_cpu_us | $procs"
  else
    echo "prometheus-process-exporter did not answer on port $PORT: $(tail -2 "$WORK/exporter.log")"
  fi
  kill "$EXPORTER_PID" 2>/dev/null || true
  wait "$EXPORTER_PID" 2>/dev/null || true
  EXPORTER_PID=""
fi

# --- hostflow ---------------------------------------------------------------
hostflow_rows=""
if [[ -z "${PROCFS_COMPARE_SKIP_HOSTFLOW:-}" ]]; then
  (cd "$ROOT" && HOSTFLOW_BENCH_SLEEPERS=0 cargo bench --quiet --bench procfs -- steady_scan) >"$WORK/bench.log" 2>&1 ||
    { tail -20 "$WORK/bench.log"; exit 1; }
  summary=$(grep '^procfs:' "$WORK/bench.log")
  echo "$summary"
  steady_wall=$(sed -E 's/.*steady scan ([0-9.]+) µs\/process wall.*/\1/' <<<"$summary")
  steady_cpu=$(sed -E 's/.*, ([0-9.]+) µs\/process CPU.*/\1/' <<<"$summary")
  cold_wall=$(sed -E 's/.*cold first scan ([0-9.]+) µs\/process.*/\1/' <<<"$summary")
  hostflow_procs=$(sed -E 's/^procfs: ([0-9]+) processes.*/\1/' <<<"$summary")
  hostflow_rows="hostflow procfs, steady scan (kept-open fds) | $steady_wall | $steady_cpu | $hostflow_procs
hostflow procfs, cold first scan | $cold_wall | - | $hostflow_procs"
fi

echo
echo "| what | µs per process (wall) | µs per process (CPU) | processes |"
echo "| --- | --- | --- | --- |"
[[ -n "$hostflow_rows" ]] && while IFS= read -r row; do echo "| $row |"; done <<<"$hostflow_rows"
echo "| ps -e -o pid,ppid,pcpu,rss,comm (median of $RUNS runs) | $ps_wall_us | $ps_cpu_us | $ps_procs |"
echo "| $exporter_row |"
