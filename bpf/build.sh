#!/bin/sh
# Regenerates the committed eBPF object and its stamp from the sources here:
#   bpf/hostflow.bpf.o      clang with the flags in bpf/cflags, then
#                           `llvm-strip -g` (DWARF goes; .BTF and .BTF.ext stay)
#   bpf/hostflow.bpf.stamp  sha256 of every input (cflags, *.c, *.h, by name)
#                           and of the object, in `sha256sum` format
# Run it after changing anything in bpf/, then commit all three. A test in
# the sources crate fails while the stamp does not match (see bpf/README.md).
# CLANG and LLVM_STRIP name the tools (default: clang, llvm-strip; Debian:
# apt-get install clang llvm).
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang}
LLVM_STRIP=${LLVM_STRIP:-llvm-strip}
export LC_ALL=C

flags=$(grep -v '^[[:space:]]*#' cflags)
# shellcheck disable=SC2086 # the flags are whitespace-separated on purpose
"$CLANG" $flags -c hostflow.bpf.c -o hostflow.bpf.o.tmp
"$LLVM_STRIP" -g hostflow.bpf.o.tmp
mv hostflow.bpf.o.tmp hostflow.bpf.o

inputs=$(ls -1 | grep -E '^(cflags|.*\.c|.*\.h)$' | sort)
{
  echo "# Written by bpf/build.sh: sha256 of every input of hostflow.bpf.o (cflags,"
  echo "# *.c and *.h, by name), then of the object. Check: cd bpf && sha256sum -c hostflow.bpf.stamp"
  echo "# Built with: $("$CLANG" --version | head -n 1)"
  # shellcheck disable=SC2086 # one name per word; the names have no spaces
  sha256sum $inputs hostflow.bpf.o
} >hostflow.bpf.stamp.tmp
mv hostflow.bpf.stamp.tmp hostflow.bpf.stamp
echo "bpf/hostflow.bpf.o: $(wc -c <hostflow.bpf.o) bytes, sha256 $(sha256sum hostflow.bpf.o | cut -d' ' -f1)"
