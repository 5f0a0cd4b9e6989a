#!/usr/bin/env bash
# `make fuzz`: builds the AFL++ targets of fuzz/ and runs each for
# FUZZ_SECONDS (default 120), then prints per target the executions, their
# rate, the corpus, and the crashes and hangs found with where they are.
# Not part of `make test` or CI: it needs cargo-afl, which it installs from
# crates.io (the crate carries AFL++'s source and builds it locally).
#
#   FUZZ_SECONDS=180 make fuzz            # every target, 3 minutes each
#   FUZZ_TARGETS="layer expand" make fuzz # some targets
#
# Work dirs: fuzz/out/<target>/ (gitignored), replaced on each run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-120}
targets=${FUZZ_TARGETS:-config dockerfile expand layer shim_options}
# Instrumented builds get their own target dir: their RUSTFLAGS differ, and
# sharing one with the plain build would rebuild everything each time.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target/afl}

if ! cargo afl --version >/dev/null 2>&1; then
    echo "== installing cargo-afl (builds AFL++ from the crate's source)"
    cargo install --locked cargo-afl
fi
# AFL++ and its runtime are built once per rustc version; the command fails
# (saying so) when they already are.
if ! out=$(cargo afl config --build 2>&1); then
    grep -q "already built" <<<"$out" || { echo "$out" >&2; exit 1; }
fi

echo "== building the targets (profile fuzz: release, overflow checks, debug assertions)"
cargo afl build --profile fuzz -p brig-fuzz --features afl --bins

# afl-fuzz refuses to start on this kind of host unless told: CPU frequency
# scaling we cannot change, a core_pattern piped to a crash handler (we
# leave the host's alone: a crash is still seen, as the signal), no screen.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
# Other builds share the two cores: no pinning.
export AFL_NO_AFFINITY=1

stat() { sed -n "s/^$1 *: *//p" "$2" 2>/dev/null || true; }

summary=()
for t in $targets; do
    seeds=fuzz/seeds/$t
    [ -d "$seeds" ] || { echo "no seeds for target $t in $seeds" >&2; exit 1; }
    work=fuzz/out/$t
    # A layer target that fuzzed as root left its tmpfs in its own mount
    # namespace, gone with it; only empty mount points remain here.
    rm -rf "$work"
    mkdir -p "$work/scratch"
    echo "== fuzzing $t for ${seconds}s (work dir $work)"
    BRIG_FUZZ_SCRATCH=$PWD/$work/scratch \
        cargo afl fuzz -V "$seconds" -m 4096 -t 2000 -i "$seeds" -o "$work/afl" \
        -- "$CARGO_TARGET_DIR/fuzz/fuzz_$t" >"$work/afl-fuzz.log" 2>&1 || {
        echo "afl-fuzz failed for $t; the end of $work/afl-fuzz.log:" >&2
        tail -20 "$work/afl-fuzz.log" >&2
        exit 1
    }
    s=$work/afl/default/fuzzer_stats
    summary+=("$(printf '%-13s %12s %10s %8s %8s %6s %6s' "$t" \
        "$(stat execs_done "$s")" "$(stat execs_per_sec "$s")" \
        "$(stat corpus_count "$s")" "$(stat edges_found "$s")" \
        "$(stat saved_crashes "$s")" "$(stat saved_hangs "$s")")")
done

echo
echo "== results (${seconds}s per target)"
printf '%-13s %12s %10s %8s %8s %6s %6s\n' target execs execs/s corpus edges crashes hangs
printf '%s\n' "${summary[@]}"
found=0
for t in $targets; do
    for kind in crashes hangs; do
        d=fuzz/out/$t/afl/default/$kind
        n=$(find "$d" -type f -name 'id:*' 2>/dev/null | wc -l)
        if [ "$n" -gt 0 ]; then
            echo "$t: $n $kind in $d"
            found=1
        fi
    done
done
if [ $found = 1 ]; then
    echo "minimize one with: cargo afl tmin -i FILE -o FILE.min -- $CARGO_TARGET_DIR/fuzz/fuzz_TARGET"
    echo "then make it a unit test beside the code it breaks (see fuzz/README.md)"
fi
