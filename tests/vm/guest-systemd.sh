#!/bin/bash
# Runs in the systemd guest (tests/vm/run.sh with VM_SYSTEMD=1) as the unit
# brig-vm.service, with systemd as PID 1, cgroup v2 only: the systemd cgroup
# driver (brig --systemd-cgroup) makes a container's scope with its limits,
# update changes them through systemd, delete removes unit and cgroup; AppArmor
# has the profiles apparmor.service loads; then the e2e tests (VM_TESTS:
# containerd with SystemdCgroup, dockerd with the systemd cgroup driver under
# AppArmor) and runc's bats files (VM_BATS) with RUNC_USE_SYSTEMD=1, for brig
# and runc. Prints "BRIG-VM-RESULT: rc=N" on the console and powers off.
. "$1"
echo "guest: systemd guest up after $(cut -d' ' -f1 /proc/uptime)s (uptime at the test unit's start)"
fails=0
check() { # what, command...
  local what=$1; shift
  if "$@"; then echo "guest: ok: $what"; else echo "guest: FAIL: $what"; fails=$((fails + 1)); fi
}
finish() {
  echo "BRIG-VM-RESULT: rc=$1"
  sync
  systemctl poweroff -ff 2>/dev/null || echo o > /proc/sysrq-trigger
  sleep 60
}
profiles=$(cat /sys/kernel/security/apparmor/profiles 2>/dev/null | grep -c .)
echo "guest: AppArmor enabled: $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent), profiles loaded: $profiles"
# apparmor.service loads the profiles of /etc/apparmor.d (the host's, a few): proof that
# AppArmor works here as on an Ubuntu or Debian host, for the docker test below.
check "apparmor.service loaded profiles" test "$profiles" -gt 0
[ "$profiles" -gt 0 ] ||
  journalctl -b -u apparmor.service --no-pager -o cat | tail -20 | sed 's/^/guest: apparmor.service: /'
echo "guest: === systemd driver smoke"
b=$(mktemp -d /tmp/sd-bundle.XXXXXX)
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
cp /bin/busybox "$b/rootfs/bin/"
for t in sh sleep true cat; do ln -s busybox "$b/rootfs/bin/$t"; done
(cd "$b" && "$BRIG" spec)
jq '.process.terminal = false | .process.args = ["sleep", "300"]
    | .linux.cgroupsPath = "system.slice:brig:smoke"
    | .linux.resources.memory = {"limit": 67108864} | .linux.resources.pids = {"limit": 50}
    | .linux.resources.cpu = {"quota": 50000, "period": 100000}
    | .linux.resources.unified = {"memory.min": "131072"}' \
  "$b/config.json" > "$b/c.json" && mv "$b/c.json" "$b/config.json"
sd() { "$BRIG" --root /run/brig-sd --systemd-cgroup "$@"; }
cg=/sys/fs/cgroup/system.slice/brig-smoke.scope
check "run -d in a systemd scope" sd run -d -b "$b" smoke
check "unit brig-smoke.scope active" systemctl is-active -q brig-smoke.scope
check "memory.max 64M" grep -qx 67108864 "$cg/memory.max"
check "pids.max 50" grep -qx 50 "$cg/pids.max"
check "systemd's MemoryMax" test "$(systemctl show -P MemoryMax brig-smoke.scope)" = 67108864
check "cpu.max 50000 100000" grep -qx "50000 100000" "$cg/cpu.max"
check "systemd's CPUQuotaPerSecUSec" test "$(systemctl show -P CPUQuotaPerSecUSec brig-smoke.scope)" = 500ms
check "systemd's TasksMax" test "$(systemctl show -P TasksMax brig-smoke.scope)" = 50
check "every controller of the root in the scope (systemd enables only its own)" \
  test "$(cat "$cg/cgroup.controllers")" = "$(cat /sys/fs/cgroup/cgroup.controllers)"
check "container init in the scope" grep -qx "0::/system.slice/brig-smoke.scope" "/proc/$(sd state smoke | jq .pid)/cgroup"
check "unified memory.min as systemd's MemoryMin" test "$(systemctl show -P MemoryMin brig-smoke.scope)" = 131072
check "update --memory 128M" sd update --memory 134217728 smoke
check "memory.max 128M after update" grep -qx 134217728 "$cg/memory.max"
check "systemd's MemoryMax after update" test "$(systemctl show -P MemoryMax brig-smoke.scope)" = 134217728
# A second container with the same cgroupsPath joins the scope (systemd answers UnitExists).
check "run -d of a second container in the same scope" sd run -d -b "$b" smoke2
check "its init in the scope" grep -qx "0::/system.slice/brig-smoke.scope" "/proc/$(sd state smoke2 | jq .pid)/cgroup"
check "delete -f of the second" sd delete -f smoke2
check "delete -f" sd delete -f smoke
check "no unit after delete" bash -c '! systemctl is-active -q brig-smoke.scope'
check "no cgroup after delete" test ! -e "$cg"
echo "guest: systemd driver smoke: $fails failed"
rm -rf "$b"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# BRIG_VM_LSM: the LSM this guest runs (AppArmor), which the LSM tests then require.
export HOME=/root TMPDIR=/tmp BRIG BRIG_SHIM BRIG_VM_LSM RUST_BACKTRACE=1
for t in $VM_TESTS; do
  bin=${t%%:*} filter=${t#"$bin"}
  echo "guest: === ${bin##*/}"
  if timeout -k 10 "${VM_TEST_SECONDS:-600}" "$bin" --test-threads=2 ${filter#:}; then
    echo "guest: PASS ${bin##*/}"
  else
    echo "guest: FAIL ${bin##*/}"; fails=$((fails + 1))
  fi
done
# runc's bats files (VM_BATS) with RUNC_USE_SYSTEMD=1, through guest.sh's runner (its
# watchdog and verdict), with runc run on the whole selection too and both runtimes' totals
# on the line "vm systemd bats: ..."; its verdict line is followed by ours.
if [ -n "${VM_BATS:-}" ]; then
  sed 's/^VM_TESTS=.*/VM_TESTS=""/' "$1" > /tmp/vm-bats.env
  echo "guest: === runc's bats with RUNC_USE_SYSTEMD=1:$VM_BATS"
  RUNC_USE_SYSTEMD=1 VM_BATS_BOTH=1 VM_BATS_SUMMARY="vm systemd bats" \
    sh "$(dirname "$0")/guest.sh" /tmp/vm-bats.env || fails=$((fails + 1))
fi
finish "$fails"
