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
for t in $VM_TESTS; do
  bin=${t%%:*}
  filter=${t#"$bin"}
  name=${bin##*/}
  echo "guest: === $name$filter"
  # The run's filter, else the file's own (VM_TESTS' NAME:FILTER).
  if "$bin" --test-threads=2 ${VM_TEST_ARGS:-${filter#:}}; then
    echo "guest: PASS $name"
  else
    echo "guest: FAIL $name"
    failed="$failed ${name%-*}"
  fi
done
# runc's bats files (VM_BATS) from the suite conformance/setup.sh prepared,
# once per runtime: pass/fail/skip per runtime, and a failure for every
# test that runc passes and brig does not.
bats_counts() { # TAP file -> "pass/fail/skip"
  awk '/^ok [0-9]+ .*# skip/ { s++; next } /^ok [0-9]/ { p++ } /^not ok [0-9]/ { f++ }
       END { printf "%d/%d/%d", p, f, s }' "$1"
}
bats_complete() { # TAP file: the plan (1..N, N > 0) and N results
  awk '/^1\.\.[0-9]+$/ { n = substr($0, 4) } /^(not )?ok [0-9]/ { r++ }
       END { exit !(n > 0 && r == n) }' "$1"
}
bats_passed() { # TAP file -> numbers of the tests that passed, one a line
  awk '/^ok [0-9]+ .*# skip/ { next } /^ok [0-9]/ { print $2 }' "$1"
}
if [ -n "${VM_BATS:-}" ]; then
  out=/tmp/brig-vm-bats
  mkdir -p "$out"
  for f in $VM_BATS; do
    for rt in runc brig; do
      case $rt in runc) bin=$(command -v runc) ;; brig) bin=$BRIG ;; esac
      echo "guest: === bats $f ($rt: $bin)"
      # Each runtime starts alike: no criu config left by the other's run
      # (checkpoint.bats writes one), and a writable working directory (the
      # suite's own is read-only here; criu writes its log to the one set
      # in such a config).
      rm -rf /etc/criu/* 2>/dev/null
      cwd=$(mktemp -d /tmp/brig-vm-bats-cwd.XXXXXX)
      (cd "$cwd" && RUNC=$bin timeout -k 10 "${VM_BATS_TIMEOUT:-900}" \
        bats -t "$VM_BATS_SUITE/tests/integration/$f") > "$out/$rt-$f.tap" 2>&1
      cat "$out/$rt-$f.tap"
    done
    summary="guest: bats $f pass/fail/skip: runc $(bats_counts "$out/runc-$f.tap")"
    summary="$summary, brig $(bats_counts "$out/brig-$f.tap")"
    echo "$summary"
    behind=""
    for n in $(bats_passed "$out/runc-$f.tap"); do
      bats_passed "$out/brig-$f.tap" | grep -qx "$n" || behind="$behind $n"
    done
    for rt in runc brig; do
      bats_complete "$out/$rt-$f.tap" || behind="$behind (the $rt run reported no or too few results)"
    done
    if [ -n "$behind" ]; then
      echo "guest: FAIL bats $f: brig does not pass test(s)$behind, which runc passes"
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
