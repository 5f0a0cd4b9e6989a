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
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${CARGO:-cargo}" rustc --release -p brig --bin brig "$@" -- -C target-feature=+crt-static
