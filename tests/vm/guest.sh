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
if [ -n "$failed" ]; then
  echo "guest: failed:$failed"
  finish 1
fi
echo "guest: all passed"
finish 0
