#!/bin/sh
# PID 1 of the test guest after tests/vm/init switched the root to the
# host's files (read-only 9p with tmpfs on /tmp, /run, /var/tmp): runs the
# cgroup e2e test binaries that tests/vm/run.sh built, with BRIG set, prints
# "BRIG-VM-RESULT: rc=N" (N non-zero if any failed) and powers off.
set -u
. "$1"
. "$(dirname "$0")/limit.sh"
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
# BRIG_VM_LSM: the LSM this guest runs, which the LSM tests then require rather than skip.
export HOME=/root TMPDIR=/tmp BRIG BRIG_SHIM BRIG_VM_LSM RUST_BACKTRACE=1
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
  run_test_binary "$VM_TEST_SECONDS" "$bin" ${VM_TEST_ARGS:-${filter#:}}
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
# change nothing.) With VM_BATS_BOTH=1 runc runs the whole selection too, and
# VM_BATS_SUMMARY names the line of both runtimes' totals over all files
# ("NAME: brig P passed, F failed, S skipped; runc P passed, F failed, S skipped").
bats_counts() { # TAP file -> "pass/fail/skip"
  awk '/^ok [0-9]+ .*# skip/ { s++; next } /^ok [0-9]/ { p++ } /^not ok [0-9]/ { f++ }
       END { printf "%d/%d/%d", p, f, s }' "$1"
}
bats_totals() { # "p/f/s" lines -> "P passed, F failed, S skipped"
  awk -F/ '{ p += $1; f += $2; s += $3 } END { printf "%d passed, %d failed, %d skipped", p, f, s }'
}
bats_complete() { # TAP file: the plan (1..N) and N results
  awk '/^1\.\.[0-9]+$/ { n = substr($0, 4); plan = 1 } /^(not )?ok [0-9]/ { r++ }
       END { exit !(plan && r == n) }' "$1"
}
bats_passed() { # TAP file -> names of the tests that passed, one a line (less bats -T's time)
  sed -n '/^ok [0-9]* .*# skip/d; /^ok [0-9]* /{ s/^ok [0-9]* //; s/ in [0-9]*ms$//; p; }' "$1"
}
bats_host_skipped() { # TAP file -> names of the tests skipped by helpers.bash's `requires`
  # (whose conditions are the guest's and the environment's, never the runtime's: runc run in
  # the same guest skips them alike), one a line
  sed -n '/^ok [0-9]* .* # skip test requires /{ s/^ok [0-9]* //; s/ # skip .*//; s/ in [0-9]*ms$//; p; }' "$1"
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
  # In a session of its own, so that it ends with whatever its tests left running.
  (cd "$cwd" && RUNC=$1 exec setsid bats -t -T ${3:+-f "$3"} "$VM_BATS_SUITE/tests/integration/$2") \
    > "$5" 2>&1 &
  bats_pid=$!
  # A watchdog rather than one limit: a test that reports nothing for VM_BATS_STALL_SECONDS
  # is named and the run ended; so is a run that has reported every test but still waits
  # (bats waits for background processes a test left, as checkpoint.bats' page server when
  # its lazy-pages test fails); and the file's limit stays a backstop.
  expect=$(bats_names "$VM_BATS_SUITE/tests/integration/$2" "$3" | grep -c .)
  begun=$(date +%s)
  heard=$begun
  seen=0
  why=""
  while kill -0 "$bats_pid" 2>/dev/null; do
    sleep 2
    now=$(date +%s)
    n=$(grep -cE '^(not )?ok [0-9]' "$5")
    if [ "$n" != "$seen" ]; then seen=$n; heard=$now; fi
    if [ "$n" -ge "$expect" ]; then
      [ $((now - heard)) -lt 30 ] ||
        why="all $n results in, but bats still waits 30s later (on what a test left running)"
    elif [ $((now - heard)) -ge "$VM_BATS_STALL_SECONDS" ]; then
      test=$(bats_names "$VM_BATS_SUITE/tests/integration/$2" "$3" | sed -n "$((n + 1))p")
      why="test $((n + 1)) [$test] reported nothing in ${VM_BATS_STALL_SECONDS}s"
    elif [ $((now - begun)) -ge "$4" ]; then
      why="timed out after ${4}s"
    fi
    if [ -n "$why" ]; then
      kill -9 -"$bats_pid" 2>/dev/null
      break
    fi
  done
  wait "$bats_pid" 2>/dev/null
  cat "$5"
  [ -z "$why" ] || echo "guest: bats $2 ($1): $why; ended it"
}
if [ -n "${VM_BATS:-}" ]; then
  out=/tmp/brig-vm-bats
  mkdir -p "$out"
  : > "$out/totals-brig"
  : > "$out/totals-runc"
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
    # (Tests brig's run left unreported are in the rest: runc's run decides what they cost.)
    bats_complete "$out/brig-$f.tap" || echo "guest: bats $f: the brig run reported too few results"
    verdict=""
    runc_counts="not needed"
    if [ "${VM_BATS_BOTH:-}" = 1 ]; then
      cp "$out/$f.selected" "$out/$f.rest"
      runc_what="the same $(grep -c . "$out/$f.rest") tests"
    else
      # Less the tests `requires` skipped: runc in this guest skips them alike.
      bats_host_skipped "$out/brig-$f.tap" > "$out/$f.host-skipped"
      grep -vxF -f "$out/$f.host-skipped" "$out/$f.rest" > "$out/$f.rest2" || true
      mv "$out/$f.rest2" "$out/$f.rest"
      runc_what="the $(grep -c . "$out/$f.rest") tests brig did not pass"
      [ ! -s "$out/$f.host-skipped" ] ||
        runc_counts="not run on the $(grep -c . "$out/$f.host-skipped") tests skipped by \`requires\` (the guest's conditions)"
    fi
    if [ -s "$out/$f.rest" ]; then
      start_item "bats $f (runc: $(command -v runc), $runc_what)" "$limit"
      run_bats "$(command -v runc)" "$f" "$(as_filter < "$out/$f.rest")" "$limit" "$out/runc-$f.tap"
      echo "guest: bats $f (runc) took $(took)"
      bats_complete "$out/runc-$f.tap" || verdict=" (the runc run reported too few results to compare)"
      bats_passed "$out/runc-$f.tap" > "$out/runc-$f.passed"
      runc_counts="$(bats_counts "$out/runc-$f.tap") of those"
      bats_counts "$out/runc-$f.tap" >> "$out/totals-runc"
      echo >> "$out/totals-runc"
      grep -vxF -f "$out/brig-$f.passed" "$out/runc-$f.passed" > "$out/$f.ahead" || true
      if [ -s "$out/$f.ahead" ]; then
        # Some of these tests race fixed timeouts (checkpoint.bats gives criu 2 s to be ready
        # to serve lazy pages), which emulation on a busy host misses now and then, with either
        # runtime: brig gets one second run of them, reported as such.
        start_item "bats $f (brig again: the $(grep -c . "$out/$f.ahead") tests runc passed and brig did not)" "$limit"
        run_bats "$BRIG" "$f" "$(as_filter < "$out/$f.ahead")" "$limit" "$out/brig2-$f.tap"
        echo "guest: bats $f (brig again) took $(took)"
        bats_passed "$out/brig2-$f.tap" > "$out/brig2-$f.passed"
        again=$(grep -xF -f "$out/brig2-$f.passed" "$out/$f.ahead" | sed 's/.*/[&]/' | paste -sd' ' || true)
        [ -z "$again" ] || echo "guest: bats $f: brig passed on its second run: $again"
        still=$(grep -vxF -f "$out/brig2-$f.passed" "$out/$f.ahead" | sed 's/.*/[&]/' | paste -sd' ' || true)
        [ -z "$still" ] || verdict="$verdict $still"
      fi
    fi
    bats_counts "$out/brig-$f.tap" >> "$out/totals-brig"
    echo >> "$out/totals-brig"
    echo "guest: bats $f pass/fail/skip: brig $(bats_counts "$out/brig-$f.tap") of $(grep -c . "$out/$f.selected") selected, runc $runc_counts"
    if [ -n "$verdict" ]; then
      echo "guest: FAIL bats $f: brig does not pass$verdict, which runc passes"
      failed="$failed $f"
    else
      echo "guest: PASS bats $f: brig passes every test runc passes"
    fi
  done
  if [ -n "${VM_BATS_SUMMARY:-}" ]; then
    echo "$VM_BATS_SUMMARY: brig $(bats_totals < "$out/totals-brig"); runc $(bats_totals < "$out/totals-runc")"
  fi
fi
if [ -n "$failed" ]; then
  echo "guest: failed:$failed"
  finish 1
fi
echo "guest: all passed"
finish 0
