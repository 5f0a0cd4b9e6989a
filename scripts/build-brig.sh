#!/usr/bin/env bash
# Builds target/release/brig as a static executable (glibc and libseccomp
# linked in), as runc's release binaries are: nothing to load at run time,
# and no dynamic loader work in every `brig` call (each one that starts a
# container process executes brig twice, see runtime/src/linux/selfexe.rs).
# bench/run.sh: `run` 7.3 -> 6.4 ms, peak RSS 5.4 -> 4.8 MB against the
# dynamic build.
#
# The flag goes to the final link of the brig binary only (`cargo rustc`):
# set for the whole build it would also reach proc-macro crates, which
# cannot be built with crt-static.
#
# Two link options keep each brig process's resident memory down (peak RSS of
# `run` 3.99 -> 3.42 MB, bench/run.sh), neither changing any code:
# - packed relative relocations (RELR, glibc >= 2.36, binutils >= 2.38): a
#   static PIE relocates itself at start, reading its relocation table, which
#   was 250 KB of RELA entries (3 KB as RELR);
# - scripts/brig-layout.ld puts the code of crates the lifecycle never runs
#   apart from the code it does (see that file).
# The linker script is an input of the link cargo does not track: a change to
# it needs `touch runtime/src/main.rs` to relink.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${CARGO:-cargo}" rustc --release -p brig --bin brig "$@" -- -C target-feature=+crt-static \
    -C link-arg=-Wl,-z,pack-relative-relocs -C link-arg=-Wl,-T,"$PWD/scripts/brig-layout.ld"
