#!/bin/bash
# Runs in the systemd guest (tests/vm/run.sh with VM_SYSTEMD=1) as the unit
# brig-vm.service, with systemd as PID 1, cgroup v2 only (VM_SYSTEMD=hybrid: v1
# controllers, guest-systemd-hybrid.sh): the systemd cgroup driver (brig
# --systemd-cgroup) makes a container's scope with its limits (guest-systemd-v2.sh),
# update changes them through systemd, delete removes unit and cgroup; rootless
# containers through the user's systemd, beside runc (guest-systemd-rootless.sh); AppArmor
# has the profiles apparmor.service loads; then the e2e tests (VM_TESTS:
# containerd with SystemdCgroup, dockerd with the systemd cgroup driver under
# AppArmor) and runc's bats files (VM_BATS) with RUNC_USE_SYSTEMD=1, for brig
# and runc. Prints "BRIG-VM-RESULT: rc=N" on the console and powers off.
. "$1"
. "$(dirname "$0")/limit.sh"
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
b=$(mktemp -d /tmp/sd-bundle.XXXXXX)
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys"
cp /bin/busybox "$b/rootfs/bin/"
for t in sh sleep true cat; do ln -s busybox "$b/rootfs/bin/$t"; done
chmod -R a+rX "$b"
sd() { "$BRIG" --root /run/brig-sd --systemd-cgroup "$@"; }
if [ "$VM_SYSTEMD" = hybrid ]; then
  . "$(dirname "$0")/guest-systemd-hybrid.sh"
else
  . "$(dirname "$0")/guest-systemd-v2.sh"
  . "$(dirname "$0")/guest-systemd-rootless.sh"
fi
rm -rf "$b"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# BRIG_VM_LSM: the LSM this guest runs (AppArmor), which the LSM tests then require.
export HOME=/root TMPDIR=/tmp BRIG BRIG_SHIM BRIG_VM_LSM RUST_BACKTRACE=1
for t in $VM_TESTS; do
  bin=${t%%:*} filter=${t#"$bin"}
  echo "guest: === ${bin##*/}"
  if run_test_binary "${VM_TEST_SECONDS:-300}" "$bin" ${filter#:}; then
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
  RUNC_USE_SYSTEMD=1 VM_BATS_BOTH=1 VM_BATS_SUMMARY="vm systemd$([ "$VM_SYSTEMD" = hybrid ] && echo -hybrid) bats" \
    sh "$(dirname "$0")/guest.sh" /tmp/vm-bats.env || fails=$((fails + 1))
fi
finish "$fails"
