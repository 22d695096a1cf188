#!/usr/bin/env bash
# Regenerates src/code-order/FLAVOR.txt: the functions an idle `hostflow run`
# (embedded default topology, `/metrics` scraped every 15 s) executes, in
# the order build.rs hands to rust-lld's --symbol-ordering-file so they sit
# together at the front of .text. Start-up's code is unmapped once start-up
# settles (src/memory.rs); what idle work runs faults back in, and the
# kernel maps 16 pages around each fault, so idle code scattered through a
# 14 MiB .text costs far more resident pages than its size. A measurement
# tool, not a test: needs root and perf.
#
#   testbed/bench/code-order.sh [FLAVOR] [ITERATIONS] [SECONDS]
#     FLAVOR release (default): `cargo build --release --bin hostflow`
#     FLAVOR dist: `cargo build --profile dist --bin hostflow` (each
#       iteration pays the fat-LTO link, ~2.5 min on 2 cores)
#     default 3 iterations of 60 s
#   testbed/bench/code-order.sh refresh [FLAVOR]
#     no profiling, no root, seconds: renames the list's functions to the
#     binary's current symbols, matched on their names without the symbol
#     hashes (a dependency or feature change renames every function of
#     every crate that depends on it, while the code stays the same); a
#     name that now matches several instantiations lists them all (a few
#     KiB), one that matches none is dropped. Run the full profile after
#     the code itself changed.
#
# How: the agent runs with HOSTFLOW_UNMAP_CODE_EVERY_MS=1, which unmaps
# its clean code pages every millisecond, and `perf` records the
# instruction-fetch page faults; each fault's address names the function
# that ran. One pass sees one function per 16 KiB window per millisecond
# (the rest of the window was mapped with it), so each iteration relinks
# with what it found and profiles again. Names the binary no longer has
# are dropped. The names carry the build's symbol hashes, which depend on
# the profile and the crates' features (hence one list per build) and
# change with Cargo.lock and the toolchain: after such a change, run this
# again (footprint.sh prints how many listed functions the binary has).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODE=profile
if [[ "${1:-}" == refresh ]]; then MODE=refresh; shift; fi
FLAVOR="${1:-release}"
ITERATIONS="${2:-3}"
SECONDS_TO_RUN="${3:-60}"
case "$FLAVOR" in
  release) BUILD=(cargo build --release --quiet --bin hostflow) BIN="$ROOT/target/release/hostflow" ;;
  dist) BUILD=(cargo build --profile dist --quiet --bin hostflow) BIN="$ROOT/target/dist/hostflow" ;;
  *) echo "code-order.sh: FLAVOR is release or dist, not $FLAVOR" >&2; exit 2 ;;
esac
ORDER="$ROOT/src/code-order/$FLAVOR.txt"
if [[ "$MODE" == refresh ]]; then
  (cd "$ROOT" && "${BUILD[@]}")
  nm --defined-only "$BIN" | python3 -c '
import collections, re, sys
# Legacy mangling ends in 17h<16 hex>E; v0 names carry crate hashes as Cs<base62>_.
unhash = lambda name: re.sub(r"Cs[0-9A-Za-z]+_", "Cs_", re.sub(r"17h[0-9a-f]{16}E$", "", name))
by_name = collections.defaultdict(list)
have = set()
for line in sys.stdin:
    f = line.split()
    if len(f) == 3 and f[1] in "tTwW":
        have.add(f[2])
        by_name[unhash(f[2])].append(f[2])
order_path = sys.argv[1]
listed, seen, kept, renamed, dropped = [], set(), 0, 0, 0
for name in (n.strip() for n in open(order_path)):
    if not name:
        continue
    if name in have:
        found, kept = [name], kept + 1
    else:
        found = by_name.get(unhash(name), [])
        found = found if len(found) <= 4 else []
        renamed, dropped = renamed + bool(found), dropped + (not found)
    listed += [n for n in found if n not in seen]
    seen.update(found)
open(order_path, "w").write("".join(n + "\n" for n in listed))
print(f"refresh: {kept} names unchanged, {renamed} renamed, {dropped} dropped; {len(listed)} listed")
' "$ORDER"
  (cd "$ROOT" && "${BUILD[@]}")
  exit 0
fi
[[ $EUID -eq 0 ]] || { echo "code-order.sh: needs root (the agent's eBPF sources and perf's tracepoint)" >&2; exit 1; }
command -v perf >/dev/null || { echo "code-order.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'kill "${SCRAPER:-}" "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$ORDER")" && touch "$ORDER"
for ((i = 1; i <= ITERATIONS; i++)); do
  (cd "$ROOT" && "${BUILD[@]}")
  for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:9598/health || break; sleep 0.1; done
  mkdir -p "$WORK/run$i" && cd "$WORK/run$i"
  HOSTFLOW_UNMAP_CODE_EVERY_MS=1 "$BIN" run 2>"$WORK/run$i/stderr" &
  PID=$!
  sleep 20 # start-up and its first unmapping pass are not idle work
  cp "/proc/$PID/maps" "$WORK/maps"
  (while sleep 15; do curl -sf -o /dev/null http://127.0.0.1:9598/metrics || true; done) &
  SCRAPER=$!
  perf record -q -e exceptions:page_fault_user -p "$PID" -o "$WORK/faults.perf" -- sleep "$SECONDS_TO_RUN" >/dev/null 2>&1
  kill "$SCRAPER" "$PID"
  wait "$PID" || true
  perf script -i "$WORK/faults.perf" -F trace 2>/dev/null >"$WORK/faults.txt"
  nm -S --defined-only "$BIN" >"$WORK/nm.txt"
  python3 - "$WORK" "$ORDER" "$(readlink -f "$BIN")" "$i" <<'PY'
import bisect, collections, re, sys
work, order_path, exe, iteration = sys.argv[1:]
maps = [l.split() for l in open(f"{work}/maps")]
mine = [m for m in maps if len(m) >= 6 and m[5] == exe]
base = min(int(m[0].split("-")[0], 16) for m in mine if int(m[2], 16) == 0)
ranges = [tuple(int(x, 16) for x in m[0].split("-")) for m in mine]
functions = []
for line in open(f"{work}/nm.txt"):
    f = line.split()
    if len(f) == 4 and f[2] in "tTwW":
        functions.append((int(f[0], 16), int(f[1], 16), f[3]))
functions.sort()
starts = [f[0] for f in functions]
sizes = {f[2]: f[1] for f in functions}
ran = collections.Counter()
for line in open(f"{work}/faults.txt"):
    m = re.search(r"address=0x([0-9a-f]+) ip=0x[0-9a-f]+ error_code=0x([0-9a-f]+)", line)
    if not m or not int(m.group(2), 16) & 0x10:  # instruction fetches only
        continue
    address = int(m.group(1), 16)
    if not any(lo <= address < hi for lo, hi in ranges):
        continue
    i = bisect.bisect_right(starts, address - base) - 1
    if i >= 0 and address - base < functions[i][0] + functions[i][1]:
        ran[functions[i][2]] += 1
kept = [n.strip() for n in open(order_path) if n.strip() in sizes]
new = [n for n, _ in ran.most_common() if n not in set(kept)]
listed = kept + new
open(order_path, "w").write("".join(n + "\n" for n in listed))
print(f"iteration {iteration}: {len(ran)} functions ran, {len(new)} new; "
      f"{len(listed)} listed, {sum(sizes[n] for n in listed) / 1024:.0f} KiB of code")
PY
done
(cd "$ROOT" && "${BUILD[@]}")
