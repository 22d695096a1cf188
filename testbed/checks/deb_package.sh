#!/usr/bin/env bash
# The Debian package, built, installed, run, removed and purged for real.
#
# Builds hostflow_<version>_<arch>.deb (and hostflow-query's, when built)
# from $HOSTFLOW_BIN with packaging/build-deb.sh, then:
#   1. the package as files: control fields, conffiles, maintainer scripts,
#      paths, modes and owners, a stripped binary, the unit's capability lines;
#   2. `systemd-analyze verify` of the unit (no warning about it);
#   3. `dpkg -i`: the hostflow system user and group, /var/lib/hostflow
#      hostflow:hostflow 0750, the installed config validates, the unit is
#      enabled;
#   4. the installed agent run the way the unit runs it: as user hostflow
#      with exactly the unit's ambient and bounding capabilities, no new
#      privileges, umask 0077, in /var/lib/hostflow, after the unit's
#      ExecStartPre (tracefs); /health answers, the spool fills with files
#      only hostflow can read, SIGTERM drains and exits 0, and
#      `hostflow query` (the hostflow-query package) reads that spool;
#   5. `dpkg -i` again (upgrade path): an edited conffile, the user and the
#      spool survive;
#   6. `dpkg -r`: the binary and unit go, the conffile and the spool stay;
#   7. `dpkg -P`: /etc/hostflow, /var/lib/hostflow, the user and group and
#      the unit's enablement go, and dpkg knows nothing of the packages; a
#      second purge (postrm run again) has nothing to do.
# The machine is left as found even when a step fails (trap).
#
# Exit 0: passed. 77: skipped (not root, dpkg missing, or a hostflow package
# or user already on this machine; the reason goes to $HOSTFLOW_SKIP_LOG;
# under CI=true a skip is a failure). Anything else: failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME="testbed/checks/deb_package.sh"
CAPS="CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_DAC_READ_SEARCH CAP_SYS_PTRACE"
UNIT_PATH=/lib/systemd/system/hostflow.service
STATE=/var/lib/hostflow

WORK=""
AGENT_PID=""
INSTALLED=0
MOUNTED_TRACEFS=0
LOGS=()

skip() {
  if [[ "${CI:-}" == true ]]; then fail "would skip, but CI must run it: $1"; fi
  [[ -n "${HOSTFLOW_SKIP_LOG:-}" ]] && printf '%s\t%s\n' "$NAME" "$1" >>"$HOSTFLOW_SKIP_LOG"
  echo "SKIPPED $NAME: $1"
  exit 77
}

fail() {
  echo "FAILED $NAME: $*"
  local log
  for log in "${LOGS[@]}"; do
    [[ -s "$log" ]] || continue
    echo "--- $log (tail) ---"
    tail -30 "$log"
  done
  exit 1
}

step() { echo "--- $*"; }
ok() { echo "    ok: $*"; }

cleanup() {
  local rc=$?
  if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$AGENT_PID" 2>/dev/null
  fi
  if ((INSTALLED)); then
    echo "cleanup: purging the packages this check installed"
    if ! dpkg -P hostflow-query hostflow >/dev/null 2>&1; then
      dpkg --purge --force-all hostflow-query hostflow >/dev/null 2>&1
      rm -rf "$STATE" /etc/hostflow
      getent passwd hostflow >/dev/null && userdel hostflow
      getent group hostflow >/dev/null && groupdel hostflow
    fi
  fi
  if ((MOUNTED_TRACEFS)); then umount /sys/kernel/tracing 2>/dev/null || true; fi
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# --- prerequisites -------------------------------------------------------------------
[[ -n "${HOSTFLOW_BIN:-}" ]] || fail "HOSTFLOW_BIN is not set (run through testbed/test)"
[[ -x "$HOSTFLOW_BIN" ]] || fail "HOSTFLOW_BIN=$HOSTFLOW_BIN is not an executable"
[[ $EUID == 0 ]] || skip "needs root (dpkg -i, a system user, setpriv)"
need() { # need TOOL DEBIAN-PACKAGE
  command -v "$1" >/dev/null || skip "$1 not found (apt-get install $2)"
}
need dpkg dpkg
need dpkg-deb dpkg
need strip binutils
need readelf binutils
need systemd-analyze systemd
need setpriv util-linux
need mountpoint util-linux
need unshare util-linux
need curl curl
need python3 python3
command -v adduser >/dev/null || command -v useradd >/dev/null || skip "neither adduser nor useradd found (apt-get install adduser)"
for pkg in hostflow hostflow-query; do
  status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
  [[ -z "${status// /}" || "$status" == un* ]] ||
    skip "package $pkg is already on this machine (dpkg status '$status'); this check installs and purges its own: dpkg -P $pkg to let it run"
done
getent passwd hostflow >/dev/null && skip "a user hostflow already exists; the package's purge would delete it"
getent group hostflow >/dev/null && skip "a group hostflow already exists; the package's purge would delete it"
for path in "$STATE" /etc/hostflow /usr/bin/hostflow "$UNIT_PATH"; do
  [[ -e "$path" ]] && skip "$path already exists (not from a package); refusing to overwrite it"
done

WORK="$(mktemp -d -t hostflow-deb-check.XXXXXX)"
chmod 0711 "$WORK" # the run step's config copy must be readable by user hostflow
LOGS=("$WORK/build.log")

# --- 1. build, and the package as files -------------------------------------------------
step "build: packaging/build-deb.sh $HOSTFLOW_BIN"
"$ROOT/packaging/build-deb.sh" "$HOSTFLOW_BIN" "$WORK/out" >"$WORK/debs" 2>"$WORK/build.log" ||
  fail "packaging/build-deb.sh failed"
sed 's/^/    /' "$WORK/build.log"
DEB="$(grep '/hostflow_[^/]*\.deb$' "$WORK/debs")"
QDEB="$(grep '/hostflow-query_[^/]*\.deb$' "$WORK/debs" || true)"
[[ -f "$DEB" ]] || fail "build-deb.sh printed no hostflow_*.deb path: $(cat "$WORK/debs")"
VERSION="$(awk '/^\[/ { s = $0; next } s == "[workspace.package]" && $1 == "version" { gsub(/[" ]/, "", $3); print $3; exit }' "$ROOT/Cargo.toml")"
ARCH="$(dpkg --print-architecture)"
[[ "$(basename "$DEB")" == "hostflow_${VERSION}_${ARCH}.deb" ]] || fail "package named $(basename "$DEB"), expected hostflow_${VERSION}_${ARCH}.deb"

step "dpkg-deb --info $(basename "$DEB")"
field() { dpkg-deb --field "$DEB" "$1"; }
[[ "$(field Package)" == hostflow ]] || fail "Package: $(field Package)"
[[ "$(field Version)" == "$VERSION" ]] || fail "Version: $(field Version), Cargo.toml says $VERSION"
[[ "$(field Architecture)" == "$ARCH" ]] || fail "Architecture: $(field Architecture)"
[[ "$(field Depends)" == *"libc6 (>= "* ]] || fail "Depends lacks a versioned libc6: $(field Depends)"
if readelf -V -W "$HOSTFLOW_BIN" | grep -q GLIBC_ABI_DT_RELR; then
  # Packed relocations (build.rs): the loader of an older glibc would not apply them.
  min="$(field Depends | grep -o 'libc6 (>= [0-9.]*' | grep -o '[0-9.]*$')"
  [[ "$(printf '%s\n' "$min" 2.36 | sort -V | head -1)" == 2.36 ]] ||
    fail "the agent carries DT_RELR relocations but Depends allows libc6 $min (< 2.36): $(field Depends)"
fi
echo "    Depends: $(field Depends)"
mkdir -p "$WORK/control" && dpkg-deb --control "$DEB" "$WORK/control" || fail "dpkg-deb --control"
expected_conffiles="$(printf '%s\n' /etc/hostflow/topology.toml /etc/hostflow/rules/README; for f in "$ROOT"/rules/linux/*.yml; do echo "/etc/hostflow/rules/linux/$(basename "$f")"; done)"
[[ "$(sort "$WORK/control/conffiles")" == "$(sort <<<"$expected_conffiles")" ]] ||
  fail "conffiles: $(tr '\n' ' ' <"$WORK/control/conffiles"), expected $(tr '\n' ' ' <<<"$expected_conffiles")"
ok "conffiles: $(tr '\n' ' ' <"$WORK/control/conffiles")"
dpkg-deb --ctrl-tarfile "$DEB" | tar -tvf - >"$WORK/control.list"
for script in postinst prerm postrm; do
  grep -Eq "^-rwxr-xr-x root/root .* \./$script$" "$WORK/control.list" || fail "$script is not -rwxr-xr-x root/root: $(grep "$script" "$WORK/control.list")"
  sh -n "$WORK/control/$script" || fail "$script: shell syntax error"
  grep -q '^set -e' "$WORK/control/$script" || fail "$script does not 'set -e'"
done
ok "postinst, prerm, postrm: 0755 root/root, set -e, valid sh"

step "dpkg-deb --contents $(basename "$DEB")"
dpkg-deb --contents "$DEB" >"$WORK/contents"
LOGS+=("$WORK/contents")
entry() { awk -v p="$1" '$6 == p { print $1, $2 }' "$WORK/contents"; }
expect_entry() { # expect_entry PATH "PERMS OWNER"
  local got; got="$(entry "$1")"
  [[ "$got" == "$2" ]] || fail "$1 in the package: '${got:-absent}', expected '$2'"
}
expect_entry ./usr/bin/hostflow "-rwxr-xr-x root/root"
expect_entry ./etc/hostflow/ "drwxr-xr-x root/root"
expect_entry ./etc/hostflow/topology.toml "-rw-r--r-- root/root"
expect_entry ./etc/hostflow/rules/ "drwxr-xr-x root/root"
expect_entry ./etc/hostflow/rules/README "-rw-r--r-- root/root"
expect_entry ./lib/systemd/system/hostflow.service "-rw-r--r-- root/root"
expect_entry ./usr/share/doc/hostflow/copyright "-rw-r--r-- root/root"
awk '$2 != "root/root" { print; bad = 1 } END { exit bad }' "$WORK/contents" >&2 || fail "entries not owned by root/root"
grep -q ' \./var/' "$WORK/contents" && fail "the package ships files under /var (postinst creates $STATE)"
extra_etc="$(awk '$1 ~ /^-/ && $6 ~ /^\.\/etc\// { sub(/^\./, "", $6); print $6 }' "$WORK/contents" | sort | comm -23 - <(sort <<<"$expected_conffiles"))"
[[ -z "$extra_etc" ]] || fail "files under /etc that are not conffiles: $extra_etc"
ok "paths, modes and owners ($(wc -l <"$WORK/contents") entries)"
dpkg-deb -x "$DEB" "$WORK/root" || fail "dpkg-deb -x"
readelf -S -W "$WORK/root/usr/bin/hostflow" | grep -q '\.symtab' && fail "/usr/bin/hostflow is not stripped"
ok "/usr/bin/hostflow stripped: $(stat -c %s "$WORK/root/usr/bin/hostflow") bytes; the .deb: $(stat -c %s "$DEB") bytes"
cmp -s "$WORK/root$UNIT_PATH" "$ROOT/packaging/systemd/hostflow.service" || fail "the packaged unit differs from packaging/systemd/hostflow.service"
unit_value() { sed -n "s/^$1=//p" "$WORK/root$UNIT_PATH"; }
[[ "$(unit_value AmbientCapabilities)" == "$CAPS" ]] || fail "AmbientCapabilities=$(unit_value AmbientCapabilities), expected $CAPS"
[[ "$(unit_value CapabilityBoundingSet)" == "$CAPS" ]] || fail "CapabilityBoundingSet=$(unit_value CapabilityBoundingSet), expected $CAPS"
ok "unit: AmbientCapabilities = CapabilityBoundingSet = $CAPS"
# The packaged topology is the default one with absolute paths: same components, same edges.
# The packaged topology names /etc/hostflow/rules: point it at the extracted copy.
sed "s#/etc/hostflow/rules#$WORK/root/etc/hostflow/rules#" "$WORK/root/etc/hostflow/topology.toml" >"$WORK/topology.extracted.toml"
# Only stdout (the graph) is compared: logs go to stderr, and a
# developer's ./data (README's first command creates it) makes `graph` log
# the L3 baselines it loads from there.
"$WORK/root/usr/bin/hostflow" graph "$WORK/topology.extracted.toml" >"$WORK/graph.packaged" 2>"$WORK/graph.packaged.log" || fail "hostflow graph of the packaged topology: $(cat "$WORK/graph.packaged.log")"
"$WORK/root/usr/bin/hostflow" graph "$ROOT/topology.toml" >"$WORK/graph.default" 2>"$WORK/graph.default.log" || fail "hostflow graph topology.toml: $(cat "$WORK/graph.default.log")"
diff -u "$WORK/graph.default" "$WORK/graph.packaged" >"$WORK/graph.diff" ||
  { LOGS+=("$WORK/graph.diff"); fail "packaging/topology.toml no longer has the components and edges of topology.toml (update it)"; }
ok "packaged topology: the default graph ($(grep -c -- '->' "$WORK/graph.packaged") edges), spool at $(sed -n 's/^path = //p' "$WORK/root/etc/hostflow/topology.toml")"

if [[ -n "$QDEB" ]]; then
  step "dpkg-deb --contents $(basename "$QDEB")"
  dpkg-deb --contents "$QDEB" >"$WORK/qcontents"
  grep -Eq '^-rwxr-xr-x root/root .* \./usr/bin/hostflow-query$' "$WORK/qcontents" || fail "hostflow-query package lacks /usr/bin/hostflow-query 0755: $(cat "$WORK/qcontents")"
  [[ "$(dpkg-deb --field "$QDEB" Version)" == "$VERSION" ]] || fail "hostflow-query Version $(dpkg-deb --field "$QDEB" Version)"
  ok "/usr/bin/hostflow-query; the .deb: $(stat -c %s "$QDEB") bytes"
else
  echo "    note: no hostflow-query next to $HOSTFLOW_BIN, so no hostflow-query package (query step below skipped)"
fi

# --- 2. systemd-analyze verify -----------------------------------------------------------
# Before installing: with the extracted package as root directory (verify checks
# that ExecStart's binary exists there), plus the system's units for the
# default dependencies (sysinit.target, ...). After installing: against the
# real system (step 3). It warns on stderr and may still exit 0, so any line
# naming the unit fails the check.
verify_unit() { # verify_unit LOG ARGS...
  local log="$1"; shift
  systemd-analyze verify "$@" >"$log" 2>&1
  local rc=$?
  if ((rc != 0)) || grep -qi 'hostflow' "$log"; then
    LOGS+=("$log")
    fail "systemd-analyze verify $* (exit $rc): $(cat "$log")"
  fi
}
step "systemd-analyze verify (extracted package root)"
cp -an /lib/systemd/system/. "$WORK/root/lib/systemd/system/" || fail "copying the system's units into the verify root"
verify_unit "$WORK/verify-root.log" --root="$WORK/root" "$UNIT_PATH"
ok "no warnings"

# --- 3. dpkg -i --------------------------------------------------------------------------
step "dpkg -i"
LOGS=("$WORK/dpkg.log")
INSTALLED=1
dpkg -i "$DEB" ${QDEB:+"$QDEB"} >"$WORK/dpkg.log" 2>&1 || fail "dpkg -i failed"
for pkg in hostflow ${QDEB:+hostflow-query}; do
  [[ "$(dpkg-query -W -f='${Status}' "$pkg")" == "install ok installed" ]] || fail "$pkg: $(dpkg-query -W -f='${Status}' "$pkg")"
done
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd hostflow) || fail "no user hostflow after dpkg -i"
((uid < 1000)) || fail "user hostflow has uid $uid: not a system user"
[[ "$home" == "$STATE" ]] || fail "user hostflow's home is $home, expected $STATE"
[[ "$shell" == */nologin || "$shell" == /bin/false ]] || fail "user hostflow's shell is $shell, expected nologin"
[[ "$(getent group hostflow | cut -d: -f3)" == "$gid" ]] || fail "user hostflow's primary group is not the group hostflow"
ok "user hostflow: uid $uid, group hostflow ($gid), home $home, shell $shell"
[[ "$(stat -c '%U:%G %a' "$STATE")" == "hostflow:hostflow 750" ]] || fail "$STATE is $(stat -c '%U:%G %a' "$STATE"), expected hostflow:hostflow 750"
ok "$STATE: hostflow:hostflow 0750"
[[ "$(/usr/bin/hostflow --version)" == *" $VERSION"* ]] || fail "/usr/bin/hostflow --version: $(/usr/bin/hostflow --version)"
setpriv --reuid=hostflow --regid=hostflow --init-groups /usr/bin/hostflow validate /etc/hostflow/topology.toml >"$WORK/validate.log" 2>&1 ||
  { LOGS+=("$WORK/validate.log"); fail "hostflow validate /etc/hostflow/topology.toml (as user hostflow) failed"; }
ok "/usr/bin/hostflow validate /etc/hostflow/topology.toml (as user hostflow): $(head -1 "$WORK/validate.log")"
if command -v deb-systemd-helper >/dev/null; then
  [[ "$(readlink /etc/systemd/system/multi-user.target.wants/hostflow.service)" == "$UNIT_PATH" ]] ||
    fail "hostflow.service is not enabled (no multi-user.target.wants symlink)"
  ok "hostflow.service enabled for the next boot (multi-user.target.wants)"
fi
step "systemd-analyze verify $UNIT_PATH (installed)"
verify_unit "$WORK/verify.log" "$UNIT_PATH"
ok "no warnings"
if systemd-analyze security --offline=yes "$UNIT_PATH" >"$WORK/security.log" 2>&1; then
  echo "    systemd-analyze security: $(grep -i 'overall exposure' "$WORK/security.log" | sed 's/^[^A-Za-z]*//')"
fi

# --- 4. run it the way the unit does ----------------------------------------------------
step "run: ExecStartPre, then hostflow as user hostflow with the unit's capabilities"
LOGS=("$WORK/agent.log")
pre="$(sed -n 's/^ExecStartPre=[-+@!:]*//p' "$UNIT_PATH")"
[[ -n "$pre" ]] || fail "the unit has no ExecStartPre (tracefs)"
# The step itself, in a private mount namespace (the host's mounts untouched):
# without tracefs it mounts it, run again it does nothing and succeeds.
unshare --mount --propagation private /bin/sh -c '
  while mountpoint -q /sys/kernel/tracing; do umount /sys/kernel/tracing || exit 3; done
  eval "$1" || exit 4
  mountpoint -q /sys/kernel/tracing || exit 5
  eval "$1" || exit 6' sh "$pre"
case $? in
  0) ok "ExecStartPre, in a mount namespace without tracefs: mounts it; run again: no-op" ;;
  3) fail "could not unmount tracefs in a private mount namespace to test ExecStartPre" ;;
  4) fail "the unit's ExecStartPre failed without tracefs: $pre" ;;
  5) fail "the unit's ExecStartPre did not mount tracefs: $pre" ;;
  6) fail "the unit's ExecStartPre failed with tracefs already mounted: $pre" ;;
  *) fail "unshare --mount failed (ExecStartPre test)" ;;
esac
if ! mountpoint -q /sys/kernel/tracing; then
  eval "$pre" || fail "the unit's ExecStartPre failed: $pre"
  mountpoint -q /sys/kernel/tracing || fail "the unit's ExecStartPre did not mount tracefs: $pre"
  MOUNTED_TRACEFS=1
  ok "ExecStartPre mounted tracefs at /sys/kernel/tracing"
else
  ok "tracefs already mounted (ExecStartPre: nothing to do)"
fi
# The installed config with a free API port (9598 may be taken on this machine).
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
install -d -m 0755 "$WORK/run"
sed "s/^address = \"127.0.0.1:9598\"/address = \"127.0.0.1:$PORT\"/" /etc/hostflow/topology.toml >"$WORK/run/topology.toml"
chmod 0644 "$WORK/run/topology.toml"
grep -q "127.0.0.1:$PORT" "$WORK/run/topology.toml" || fail "the installed topology has no [api] address line to redirect"
cap_list="$(tr 'A-Z ' 'a-z\n' <<<"${CAPS//CAP_/}" | sed 's/^/+/' | paste -sd,)"
(
  cd "$STATE" || exit 1
  umask 0077
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    HOME="$STATE" USER=hostflow LOGNAME=hostflow \
    setpriv --reuid=hostflow --regid=hostflow --init-groups --no-new-privs \
    --inh-caps="-all,$cap_list" --ambient-caps="-all,$cap_list" --bounding-set="-all,$cap_list" \
    /usr/bin/hostflow run --config "$WORK/run/topology.toml"
) >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!

# Its credentials: uid hostflow, and effective = ambient = bounding = the unit's set.
mask=0
for cap in $CAPS; do
  case "$cap" in
    CAP_DAC_READ_SEARCH) bit=2 ;; CAP_NET_ADMIN) bit=12 ;; CAP_SYS_PTRACE) bit=19 ;;
    CAP_PERFMON) bit=38 ;; CAP_BPF) bit=39 ;; *) fail "no bit known for $cap" ;;
  esac
  mask=$((mask | (1 << bit)))
done
want="$(printf '%016x' "$mask")"
for _ in $(seq 100); do
  [[ "$(readlink "/proc/$AGENT_PID/exe" 2>/dev/null)" == /usr/bin/hostflow ]] && break
  kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited at once"
  sleep 0.1
done
status="$(cat "/proc/$AGENT_PID/status")"
[[ "$(awk '/^Uid:/ { print $2 }' <<<"$status")" == "$uid" ]] || fail "the agent does not run as hostflow: $(grep '^Uid:' <<<"$status")"
for set in CapEff CapAmb CapBnd; do
  got="$(awk -v k="$set:" '$1 == k { print $2 }' <<<"$status")"
  [[ "$got" == "$want" ]] || fail "$set of the agent is $got, expected $want ($CAPS)"
done
[[ "$(awk '/^NoNewPrivs:/ { print $2 }' <<<"$status")" == 1 ]] || fail "the agent runs without NoNewPrivs"
ok "pid $AGENT_PID: uid hostflow, CapEff = CapAmb = CapBnd = $want, NoNewPrivs"

health=""
for _ in $(seq 60); do
  kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited before /health answered"
  health="$(curl -fsS "http://127.0.0.1:$PORT/health" 2>/dev/null)" && break
  sleep 0.5
done
[[ -n "$health" ]] || fail "/health did not answer within 30 s"
printf '%s' "$health" >"$WORK/health.json"
python3 - "$WORK/health.json" <<'EOF' || fail "/health: $(cat "$WORK/health.json")"
import json, sys
report = json.load(open(sys.argv[1]))
for name, c in sorted(report["components"].items()):
    print(f"    {name:10} {c['type']:12} {c['state']}" + (f" ({c['reason']})" if c.get("reason") else ""))
print(f"    /health: {report['status']}")
sys.exit(0 if report["status"] in ("ok", "degraded") else 1)
EOF

spool_files=""
for _ in $(seq 60); do
  kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited before writing to the spool"
  spool_files="$(find "$STATE/spool" -mindepth 2 -type f 2>/dev/null)"
  [[ -n "$spool_files" ]] && break
  sleep 0.5
done
[[ -n "$spool_files" ]] || fail "no file in $STATE/spool/*/ within 30 s"
ok "spool: $(wc -l <<<"$spool_files") file(s), e.g. ${spool_files%%$'\n'*}"
leaky="$(find "$STATE" \( ! -user hostflow -o -perm /0007 \) -printf '%M %u:%g %p\n')"
[[ -z "$leaky" ]] || fail "in $STATE, not owned by hostflow or open to others: $leaky"
ok "everything under $STATE is hostflow's and closed to other users"

kill -TERM "$AGENT_PID"
for _ in $(seq 600); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$AGENT_PID" 2>/dev/null && fail "the agent did not stop within 60 s (the unit's TimeoutStopSec) of SIGTERM"
wait "$AGENT_PID"
rc=$?
AGENT_PID=""
((rc == 0)) || fail "the agent exited $rc after SIGTERM"
ok "SIGTERM: drained and exited 0"

if [[ -n "$QDEB" ]]; then
  /usr/bin/hostflow query --spool "$STATE/spool" --tables >"$WORK/query.log" 2>&1 ||
    { LOGS+=("$WORK/query.log"); fail "hostflow query --spool $STATE/spool --tables failed"; }
  grep -q process_sample "$WORK/query.log" || { LOGS+=("$WORK/query.log"); fail "hostflow query --tables shows no process_sample table"; }
  ok "hostflow query --spool $STATE/spool --tables (via /usr/bin/hostflow-query):"
  sed 's/^/      /' "$WORK/query.log" | head -12
fi

# --- 5. dpkg -i again: upgrade path keeps edits, user and spool --------------------------------
step "dpkg -i again (an edited conffile, the user and the spool survive)"
echo "# edited by $NAME" >>/etc/hostflow/topology.toml
install -o hostflow -g hostflow -m 0600 /dev/null "$STATE/spool/deb-check-marker"
dpkg -i "$DEB" >"$WORK/dpkg.log" 2>&1 || fail "dpkg -i (again) failed"
tail -1 /etc/hostflow/topology.toml | grep -q "edited by" || fail "reinstalling replaced the edited /etc/hostflow/topology.toml"
[[ "$(id -u hostflow)" == "$uid" ]] || fail "reinstalling changed hostflow's uid to $(id -u hostflow)"
[[ -f "$STATE/spool/deb-check-marker" ]] || fail "reinstalling lost the spool marker"
[[ "$(stat -c '%U:%G %a' "$STATE")" == "hostflow:hostflow 750" ]] || fail "$STATE is $(stat -c '%U:%G %a' "$STATE") after reinstalling"
ok "conffile edit, uid $uid, $STATE and its spool kept"

# --- 6. dpkg -r -------------------------------------------------------------------------
step "dpkg -r"
dpkg -r ${QDEB:+hostflow-query} hostflow >"$WORK/dpkg.log" 2>&1 || fail "dpkg -r failed"
for path in /usr/bin/hostflow /usr/bin/hostflow-query "$UNIT_PATH"; do
  [[ -e "$path" ]] && fail "$path is still there after dpkg -r"
done
[[ "$(dpkg-query -W -f='${Status}' hostflow)" == "deinstall ok config-files" ]] || fail "hostflow after dpkg -r: $(dpkg-query -W -f='${Status}' hostflow)"
tail -1 /etc/hostflow/topology.toml | grep -q "edited by" || fail "dpkg -r removed or replaced /etc/hostflow/topology.toml"
[[ -f "$STATE/spool/deb-check-marker" ]] || fail "dpkg -r removed the spool ($STATE/spool/deb-check-marker)"
getent passwd hostflow >/dev/null || fail "dpkg -r removed the user hostflow"
ok "binaries and unit gone; conffile, spool ($(find "$STATE/spool" -type f | wc -l) files) and user kept"

# --- 7. dpkg -P -------------------------------------------------------------------------
step "dpkg -P"
dpkg -P ${QDEB:+hostflow-query} hostflow >"$WORK/dpkg.log" 2>&1 || fail "dpkg -P failed"
INSTALLED=0
for path in /etc/hostflow "$STATE" /etc/systemd/system/hostflow.service /etc/systemd/system/multi-user.target.wants/hostflow.service; do
  [[ -e "$path" || -L "$path" ]] && fail "$path is still there after dpkg -P"
done
leftover="$(grep -rls hostflow /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked 2>/dev/null;
  find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked -name '*hostflow*' 2>/dev/null)"
[[ -z "$leftover" ]] || fail "deb-systemd-helper state left after dpkg -P: $leftover"
getent passwd hostflow >/dev/null && fail "user hostflow still exists after dpkg -P"
getent group hostflow >/dev/null && fail "group hostflow still exists after dpkg -P"
listed="$(dpkg -l 2>/dev/null | awk '$2 ~ /^hostflow(-query)?(:|$)/')"
[[ -z "$listed" ]] || fail "dpkg -l still lists: $listed"
ok "/etc/hostflow, $STATE, unit state, user and group gone; dpkg -l lists nothing"
sh -e "$WORK/control/postrm" purge >"$WORK/postrm-again.log" 2>&1 || { LOGS+=("$WORK/postrm-again.log"); fail "postrm purge run a second time failed"; }
ok "postrm purge again: nothing to do, exit 0"

echo "PASSED $NAME"
