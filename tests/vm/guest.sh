#!/bin/sh
# PID 1 of the test guest after tests/vm/init switched the root to the
# host's files (read-only 9p with tmpfs on /tmp, /run, /var/tmp): runs the
# cgroup e2e test binaries that tests/vm/run.sh built, with BRIG set, prints
# "BRIG-VM-RESULT: rc=N" (N non-zero if any failed) and powers off.
set -u
. "$1"
finish() {
  echo "BRIG-VM-RESULT: rc=$1"
  sync
  if [ $$ = 1 ]; then
    busybox poweroff -f 2>/dev/null || echo o > /proc/sysrq-trigger
    sleep 10
  fi
  exit "$1"
}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp BRIG BRIG_SHIM RUST_BACKTRACE=1
# The guest has no network card, but criu (checkpoint tests) probes TCP
# repair on a loopback socket: lo must be up.
ip link set lo up 2>/dev/null || busybox ip link set lo up
echo "guest: kernel $(uname -r), /sys/fs/cgroup is $(stat -f -c %T /sys/fs/cgroup)," \
  "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
failed=""
# Every item runs under its own limit (run.sh sized the guest's from them), so one that hangs
# is named and ended while the others still run.
start_item() { item_start=$(date +%s); echo "guest: === $1 (limit ${2}s)"; }
took() { echo "$(($(date +%s) - item_start))s"; }
for t in $VM_TESTS; do
  bin=${t%%:*}
  filter=${t#"$bin"}
  name=${bin##*/}
  start_item "$name$filter" "$VM_TEST_SECONDS"
  # The run's filter, else the file's own (VM_TESTS' NAME:FILTER).
  timeout -k 10 "$VM_TEST_SECONDS" "$bin" --test-threads=2 ${VM_TEST_ARGS:-${filter#:}}
  rc=$?
  if [ "$rc" = 0 ]; then
    echo "guest: PASS $name ($(took))"
  else
    [ "$rc" = 124 ] && echo "guest: $name timed out after ${VM_TEST_SECONDS}s"
    echo "guest: FAIL $name ($(took))"
    failed="$failed ${name%-*}"
  fi
done
# runc's bats files (VM_BATS) from the suite conformance/setup.sh prepared:
# brig runs run.sh's selection of each file; runc then runs only the tests
# brig did not pass (failed, skipped or not reported), which is all the
# verdict needs: a failure for every test that runc passes and brig does not.
# (Emulation makes every test slow; runc's run of the tests brig passed would
# change nothing.)
bats_counts() { # TAP file -> "pass/fail/skip"
  awk '/^ok [0-9]+ .*# skip/ { s++; next } /^ok [0-9]/ { p++ } /^not ok [0-9]/ { f++ }
       END { printf "%d/%d/%d", p, f, s }' "$1"
}
bats_complete() { # TAP file: the plan (1..N) and N results
  awk '/^1\.\.[0-9]+$/ { n = substr($0, 4); plan = 1 } /^(not )?ok [0-9]/ { r++ }
       END { exit !(plan && r == n) }' "$1"
}
bats_passed() { # TAP file -> names of the tests that passed, one a line
  sed -n '/^ok [0-9]* .*# skip/d; s/^ok [0-9]* //p' "$1"
}
bats_names() { # bats file, filter regex (empty: all) -> its test names, one a line
  awk '/^@test "/ { n = $0; sub(/^@test "/, "", n); sub(/" *\{ *$/, "", n); print n }' "$1" |
    { if [ -n "$2" ]; then grep -E -- "$2"; else cat; fi; }
}
as_filter() { # names, one a line -> an anchored regex for bats --filter
  sed 's/[][\.*^$()+?{}|]/\\&/g' | paste -sd'|' | sed 's/^/^(/; s/$/)$/'
}
run_bats() { # runtime binary, file, filter, limit, TAP output
  # Each run starts alike: no criu config left by an earlier run (checkpoint.bats
  # writes one), and a writable working directory (the suite's own is read-only
  # here; criu writes its log to the one set in such a config).
  rm -rf /etc/criu/* 2>/dev/null
  cwd=$(mktemp -d /tmp/brig-vm-bats-cwd.XXXXXX)
  (cd "$cwd" && RUNC=$1 timeout -k 10 "$4" \
    bats -t ${3:+-f "$3"} "$VM_BATS_SUITE/tests/integration/$2") > "$5" 2>&1
  rc=$?
  cat "$5"
  [ "$rc" = 124 ] && echo "guest: bats $2 ($1) timed out after ${4}s"
}
if [ -n "${VM_BATS:-}" ]; then
  out=/tmp/brig-vm-bats
  mkdir -p "$out"
  for f in $VM_BATS; do
    src=$VM_BATS_SUITE/tests/integration/$f
    # run.sh's selection: the tests of this file that need the guest (cgroup v2,
    # criu), as a regex for bats --filter (empty: all), and the time limit.
    filter=$(cat "$VM_BATS_SELECT/$f.re")
    limit=$(cat "$VM_BATS_SELECT/$f.limit")
    start_item "bats $f (brig: $BRIG)" "$limit"
    run_bats "$BRIG" "$f" "$filter" "$limit" "$out/brig-$f.tap"
    echo "guest: bats $f (brig) took $(took)"
    bats_names "$src" "$filter" > "$out/$f.selected"
    bats_passed "$out/brig-$f.tap" | sort > "$out/brig-$f.passed"
    grep -vxF -f "$out/brig-$f.passed" "$out/$f.selected" > "$out/$f.rest" || true
    behind=""
    bats_complete "$out/brig-$f.tap" || behind=" (the brig run reported no or too few results)"
    runc_counts="not needed"
    if [ -s "$out/$f.rest" ]; then
      rest=$(as_filter < "$out/$f.rest")
      start_item "bats $f (runc: $(command -v runc), the $(grep -c . "$out/$f.rest") tests brig did not pass)" "$limit"
      run_bats "$(command -v runc)" "$f" "$rest" "$limit" "$out/runc-$f.tap"
      echo "guest: bats $f (runc) took $(took)"
      bats_complete "$out/runc-$f.tap" || behind="$behind (the runc run reported no or too few results)"
      bats_passed "$out/runc-$f.tap" > "$out/runc-$f.passed"
      ahead=$(grep -vxF -f "$out/brig-$f.passed" "$out/runc-$f.passed" | sed 's/.*/[&]/' | paste -sd' ')
      [ -z "$ahead" ] || behind="$behind $ahead"
      runc_counts="$(bats_counts "$out/runc-$f.tap") of those"
    fi
    echo "guest: bats $f pass/fail/skip: brig $(bats_counts "$out/brig-$f.tap") of $(grep -c . "$out/$f.selected") selected, runc $runc_counts"
    if [ -n "$behind" ]; then
      echo "guest: FAIL bats $f: brig does not pass$behind, which runc passes"
      failed="$failed $f"
    else
      echo "guest: PASS bats $f: brig passes every test runc passes"
    fi
  done
fi
if [ -n "$failed" ]; then
  echo "guest: failed:$failed"
  finish 1
fi
echo "guest: all passed"
finish 0
