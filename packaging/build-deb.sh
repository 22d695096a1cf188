#!/usr/bin/env bash
# Builds hostflow's Debian packages with dpkg-deb (no cargo-deb, no debhelper).
#
#   packaging/build-deb.sh [BIN] [OUTDIR]
#
# BIN     the agent binary (default: target/release/hostflow)
# OUTDIR  where the packages go (default: target/debian)
#
# Writes OUTDIR/hostflow_<version>_<arch>.deb and, when hostflow-query sits
# next to BIN, OUTDIR/hostflow-query_<version>_<arch>.deb; prints the path of
# each package on stdout (one per line) and sizes on stderr. The version is
# Cargo.toml's [workspace.package] version, which BIN must report; the
# architecture is `dpkg --print-architecture`.
#
# hostflow:        /usr/bin/hostflow (stripped), /etc/hostflow/topology.toml
#                  (conffile), /etc/hostflow/rules/ (README, conffile),
#                  /lib/systemd/system/hostflow.service, docs; the maintainer
#                  scripts create the `hostflow` user and /var/lib/hostflow.
# hostflow-query:  /usr/bin/hostflow-query (DataFusion; `hostflow query` runs
#                  it). A package of its own so the agent on every host stays
#                  lean; install it where someone queries a spool.
#
# Needs: dpkg-deb, strip and readelf (binutils), gzip. Runs as any user: files
# are recorded as root:root (dpkg-deb --root-owner-group).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/packaging"
BIN="${1:-$ROOT/target/release/hostflow}"
OUTDIR="${2:-$ROOT/target/debian}"
MAINTAINER="${HOSTFLOW_DEB_MAINTAINER:-hostflow developers <hostflow@localhost>}"

die() { echo "build-deb: $*" >&2; exit 1; }
say() { echo "build-deb: $*" >&2; }

for tool in dpkg dpkg-deb dpkg-query strip readelf ldd gzip md5sum; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg binutils gzip)"
done
[[ -x "$BIN" ]] || die "no agent binary at $BIN (cargo build --release --bin hostflow)"

# --- version, architecture ---------------------------------------------------------
VERSION="$(awk '
  /^\[/ { section = $0; next }
  section == "[workspace.package]" && $1 == "version" { gsub(/[" ]/, "", $3); print $3; exit }
' "$ROOT/Cargo.toml")"
[[ "$VERSION" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "no [workspace.package] version in Cargo.toml (got '$VERSION')"
ARCH="$(dpkg --print-architecture)"
reported="$("$BIN" --version 2>/dev/null || true)"
[[ "$reported" == *" $VERSION"* ]] || die "$BIN reports '$reported', Cargo.toml says $VERSION: rebuild it"
QUERY_BIN="$(dirname "$BIN")/hostflow-query"

# Reproducible: timestamps from the last commit unless the caller set them.
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH

STAGE="$(mktemp -d -t hostflow-deb.XXXXXX)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUTDIR"
umask 022

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# stage_binary SRC DEST: a stripped copy, its size reported.
stage_binary() {
  local src="$1" dest="$2"
  install -d -m 0755 "$(dirname "$dest")"
  strip --strip-all -o "$dest" "$src"
  chmod 0755 "$dest"
  say "$(basename "$dest"): $(mib "$(stat -c %s "$src")") as built, $(mib "$(stat -c %s "$dest")") stripped ($(stat -c %s "$dest") bytes)"
}

# shlib_depends BINARY: a Depends list from the ELF NEEDED entries: the
# package of each shared library (resolved by ldd, owner from dpkg -S), libc6
# with the newest GLIBC_ symbol version the binary uses, or 2.36 when it
# carries packed relative relocations (its version needs name
# GLIBC_ABI_DT_RELR: build.rs links with -z pack-relative-relocs). (dpkg-
# shlibdeps does this from symbols files, but it is in dpkg-dev, which
# hosts rarely have.)
shlib_depends() {
  local bin="$1" glibc so path candidate pkg deps=()
  glibc="$(readelf --dyn-syms -W "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
  if readelf -V -W "$bin" | grep -q 'GLIBC_ABI_DT_RELR'; then
    glibc="$(printf '%s\n' "${glibc:-2.36}" 2.36 | sort -V | tail -1)"
  fi
  for so in $(readelf -d -W "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
    # "libc.so.6 => /lib/.../libc.so.6 (0x...)", or for the dynamic loader
    # "/lib64/ld-linux-x86-64.so.2 (0x...)".
    path="$(ldd "$bin" | awk -v so="$so" '
      $1 == so && $2 == "=>" { print $3; exit }
      $1 ~ "/" && substr($1, length($1) - length(so)) == "/" so { print $1; exit }')"
    [[ "$path" == /* ]] || die "ldd cannot resolve $so (needed by $bin)"
    pkg=""
    for candidate in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr$path"; do
      pkg="$(dpkg-query -S "$candidate" 2>/dev/null | head -1 | cut -d: -f1)" && [[ -n "$pkg" ]] && break
    done
    [[ -n "$pkg" ]] || die "no installed package owns $path ($so, needed by $bin)"
    if [[ "$pkg" == libc6 && -n "$glibc" ]]; then pkg="libc6 (>= $glibc)"; fi
    deps+=("$pkg")
  done
  ((${#deps[@]})) || die "$bin needs no shared library: unexpected for a glibc build"
  printf '%s\n' "${deps[@]}" | sort -u | paste -sd, | sed 's/,/, /g'
}

# finish PKGDIR NAME: md5sums, Installed-Size, then dpkg-deb --build.
finish() {
  local dir="$1" name="$2" deb
  (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$dir/DEBIAN/md5sums"
  chmod 0644 "$dir/DEBIAN/md5sums"
  find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  deb="$OUTDIR/${name}_${VERSION}_${ARCH}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$dir" "$deb" >/dev/null
  say "$(basename "$deb"): $(mib "$(stat -c %s "$deb")") ($(stat -c %s "$deb") bytes)"
  echo "$deb"
}

installed_size() { du -sk --exclude=DEBIAN "$1" | cut -f1; }

doc_copyright() {
  install -d -m 0755 "$1"
  cat >"$1/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hostflow

Files: *
Copyright: hostflow developers
License: Apache-2.0
 On Debian systems the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

Files: bpf/hostflow.bpf.c
Copyright: hostflow developers
License: GPL-2.0-only
 The eBPF programs embedded in /usr/bin/hostflow and loaded into the kernel
 (they use GPL-only helpers). On Debian systems the full text of the GNU
 General Public License version 2 is in /usr/share/common-licenses/GPL-2.
 The source is bpf/hostflow.bpf.c in hostflow's source tree.

Files: bpf/*.h
Copyright: hostflow developers
License: GPL-2.0-only OR Apache-2.0
EOF
  chmod 0644 "$1/copyright"
}

# --- hostflow ------------------------------------------------------------------------
D="$STAGE/hostflow"
install -d -m 0755 "$D/DEBIAN" "$D/etc/hostflow/rules" "$D/lib/systemd/system" "$D/usr/share/doc/hostflow"
stage_binary "$BIN" "$D/usr/bin/hostflow"
install -m 0644 "$PKG/topology.toml" "$D/etc/hostflow/topology.toml"
install -m 0644 "$PKG/rules-README" "$D/etc/hostflow/rules/README"
install -d -m 0755 "$D/etc/hostflow/rules/linux"
for rule_file in "$ROOT"/rules/linux/*.yml; do
  install -m 0644 "$rule_file" "$D/etc/hostflow/rules/linux/$(basename "$rule_file")"
done
install -m 0644 "$PKG/systemd/hostflow.service" "$D/lib/systemd/system/hostflow.service"
doc_copyright "$D/usr/share/doc/hostflow"
install -m 0644 "$PKG/README.md" "$D/usr/share/doc/hostflow/README.Debian"
gzip -9n <"$ROOT/README.md" >"$D/usr/share/doc/hostflow/README.md.gz"
chmod 0644 "$D/usr/share/doc/hostflow/README.md.gz"
for script in postinst prerm postrm; do install -m 0755 "$PKG/deb/$script" "$D/DEBIAN/$script"; done
{
  cat "$PKG/deb/conffiles"
  for rule_file in "$D"/etc/hostflow/rules/linux/*.yml; do echo "/etc/hostflow/rules/linux/$(basename "$rule_file")"; done
} >"$D/DEBIAN/conffiles"
chmod 0644 "$D/DEBIAN/conffiles"
# Validate as installed: the packaged topology names /etc/hostflow/rules,
# which here is the staged copy.
sed "s#/etc/hostflow/rules#$D/etc/hostflow/rules#" "$D/etc/hostflow/topology.toml" >"$STAGE/topology-check.toml"
"$D/usr/bin/hostflow" validate "$STAGE/topology-check.toml" >/dev/null ||
  die "packaging/topology.toml does not validate: $("$D/usr/bin/hostflow" validate "$STAGE/topology-check.toml" 2>&1)"
DEPENDS="$(shlib_depends "$D/usr/bin/hostflow")"
cat >"$D/DEBIAN/control" <<EOF
Package: hostflow
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(installed_size "$D")
Depends: $DEPENDS, adduser | passwd
Suggests: hostflow-query
Section: admin
Priority: optional
Description: host agent built as a streaming engine
 hostflow reads a declarative topology and wires sources (/proc scans, eBPF
 exec/exit/fork/connect/open events), transforms (Top-N, sketches, process
 lifecycles) and sinks (a local Arrow spool, Kafka) with a bounded,
 observable buffer on every edge.
 .
 This package runs it as the systemd service hostflow.service: as the
 unprivileged user hostflow with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN,
 CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE only, configured by
 /etc/hostflow/topology.toml, spooling to /var/lib/hostflow/spool.
EOF
finish "$D" hostflow

# --- hostflow-query (when built) ------------------------------------------------------
if [[ -x "$QUERY_BIN" ]]; then
  Q="$STAGE/hostflow-query"
  install -d -m 0755 "$Q/DEBIAN"
  stage_binary "$QUERY_BIN" "$Q/usr/bin/hostflow-query"
  doc_copyright "$Q/usr/share/doc/hostflow-query"
  QDEPENDS="$(shlib_depends "$Q/usr/bin/hostflow-query")"
  cat >"$Q/DEBIAN/control" <<EOF
Package: hostflow-query
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(installed_size "$Q")
Depends: $QDEPENDS
Enhances: hostflow
Section: admin
Priority: optional
Description: SQL over hostflow's Arrow spool
 hostflow-query answers SQL (DataFusion) over the Arrow IPC files a hostflow
 agent spools, one table per event kind; "hostflow query" runs it. Kept out
 of the hostflow package so the agent on every host carries no SQL engine.
 .
 Example: hostflow query --spool /var/lib/hostflow/spool --tables
EOF
  finish "$Q" hostflow-query
else
  say "no $QUERY_BIN: hostflow-query package not built (cargo build --release -p hostflow-query)"
fi
