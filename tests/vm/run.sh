#!/usr/bin/env bash
# Runs brig's cgroup end-to-end tests on cgroup v2 in a small KVM guest.
#
# The guest is Debian's linux-image-amd64 kernel booted with cgroup v1 off
# (cgroup_no_v1=all), a busybox initramfs built here (tests/vm/init), and the
# host's / shared read-only over virtio-9p; tests/vm/guest.sh runs the test
# binaries built on the host, with BRIG pointing at the host's brig. The
# kernel runs AppArmor (securityfs mounted: the LSM tests load profiles with
# the host's apparmor_parser), or with VM_SELINUX=1 SELinux and Debian's
# reference policy (tests/vm/selinux-policy.sh), permissive.
#
# It then runs runc's bats files named in VM_BATS (default checkpoint.bats,
# which needs a kernel criu 3.17 can check: the host's is too new; `make
# vm-test` adds the files with cgroup v2 tests, skipped on the host) from the
# suite conformance/setup.sh prepares, with runc and with brig, and prints
# pass/fail/skip for each; a test runc passes that brig does not is a failure.
#
# usage: tests/vm/run.sh [test-name filter passed to the test binaries]
# env:   CARGO_TARGET_DIR (as cargo), VM_TESTS (test files, default below;
#        NAME:FILTER runs only that file's tests matching FILTER; empty: none),
#        VM_BATS (bats files; empty: none; of each, the tests that deal with
#        cgroups, systemd or criu, less those whose names match the regex
#        VM_BATS_EXCLUDE), VM_TEST_SECONDS (limit of one test binary,
#        300: the longest takes ~60 s), VM_BATS_TEST_SECONDS (limit of a bats file per test, 150; at
#        least 300), VM_BATS_STALL_SECONDS (a bats run that reports nothing
#        that long is ended, the test named; 300), VM_BOOT_SECONDS (300), VM_TIMEOUT (the guest's limit;
#        default: the sum of those), VM_KEEP=1 keeps the work dir, VM_BRIG
#        (the brig under test, default the release build), VM_SELINUX=1 (boot with
#        SELinux and Debian's reference policy instead of AppArmor), VM_SYSTEMD=1 (systemd as
#        PID 1: tests/vm/guest-systemd.sh; its VM_TESTS default shim_systemd and
#        shim_docker:apparmor; its bats run with RUNC_USE_SYSTEMD=1, for runc too, on the tests
#        that check systemd's side, totals on the line "vm systemd bats: ..."; rootless
#        containers through a user's systemd: guest-systemd-rootless.sh), VM_SYSTEMD=hybrid
#        (the same guest with systemd's hybrid cgroup layout, v1 controllers and cgroup2 at
#        /sys/fs/cgroup/unified: guest-systemd-hybrid.sh; no VM_TESTS by default; bats
#        totals on "vm systemd-hybrid bats: ...").
# shim_cri (CRI ContainerStats) needs crictl: built first by conformance/critest.sh --build-only.
# A test binary that fails runs the tests it did not pass once more (tests/vm/limit.sh:
# "RETRY", "passed on retry" in the summary), as brig's failed bats tests do.
# Prints PASS/FAIL; exits non-zero on failure; skips (exit 0) only when
# /dev/kvm is absent.
set -euo pipefail
cd "$(dirname "$0")/../.."
ws=$PWD

if [ ! -c /dev/kvm ]; then
  echo "SKIP vm tests: /dev/kvm is absent (no KVM on this machine)"
  exit 0
fi

need=()
# VM_SYSTEMD=1: systemd as PID 1 (tests/vm/guest-systemd.sh), no suites by default;
# VM_SYSTEMD=hybrid: the same with cgroup v1 controllers (systemd's hybrid layout).
systemd=${VM_SYSTEMD:-}
case $systemd in
"" | 1) ;;
hybrid) : "${VM_TESTS=}" ;;
*) echo "FAIL vm tests: VM_SYSTEMD=$systemd: give 1 (cgroup v2) or hybrid" >&2; exit 1 ;;
esac
if [ -n "$systemd" ]; then
  : "${VM_BATS=}" "${VM_TESTS=shim_systemd shim_docker:apparmor}"
fi
vm_bats=${VM_BATS-checkpoint.bats}
suite=$ws/conformance/work/suite
pkgs="qemu-system-x86 linux-image-amd64 busybox-static jq cpio criu"
[ -z "$vm_bats" ] || pkgs="$pkgs bats runc iproute2"
# The systemd guests boot the host's systemd and dbus; a user's manager gets its session bus
# from dbus-user-session (rootless through the user's systemd); runc runs beside brig there.
[ -z "$systemd" ] || pkgs="$pkgs systemd dbus dbus-user-session apparmor runc"
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The newest installed Debian kernel that has its modules.
kver=""
for k in $(ls -v /boot/vmlinuz-*-amd64 2>/dev/null); do
  v=${k#/boot/vmlinuz-}
  [ -f "/lib/modules/$v/modules.dep" ] && kver=$v
done
[ -n "$kver" ] || { echo "FAIL vm tests: no /boot/vmlinuz-*-amd64 with /lib/modules" >&2; exit 1; }
moddir=/lib/modules/$kver

target=${CARGO_TARGET_DIR:-$ws/target}
echo "vm: building brig and the test binaries (target dir $target)"
[ -n "${VM_BRIG:-}" ] || bash scripts/build-brig.sh -q
# (brig-build makes the busybox image shim_docker's tests load into dockerd.)
cargo build --release -q -p containerd-shim-brig-v2 -p brig-build
tests=${VM_TESTS-"runtime_cgroups runtime_cgroups_v2 runtime_ps_update_events runtime_lifecycle runtime_terminal_exec runtime_checkpoint runtime_lsm shim:checkpoint shim:metrics shim_cri"}
bins=$([ -z "$tests" ] || cargo test -p brig-tests --no-run --message-format=json 2>/dev/null \
  | jq -r 'select(.reason == "compiler-artifact" and .executable != null
                  and (.target.kind | index("test"))) | "\(.target.name) \(.executable)"')
# crictl for shim_cri's CRI ContainerStats test, built from cri-tools as critest.sh builds it.
case " $tests " in
*" shim_cri"[:\ ]*) bash conformance/critest.sh --build-only ;;
esac
test_bins=""
for t in $tests; do
  # NAME or NAME:FILTER (that file's tests whose names contain FILTER)
  name=${t%%:*}
  b=$(awk -v t="$name" '$1 == t { print $2 }' <<<"$bins")
  [ -n "$b" ] || { echo "FAIL vm tests: no test binary for tests/tests/$name.rs" >&2; exit 1; }
  test_bins="$test_bins $b${t#"$name"}"
done

if [ -n "$vm_bats" ] && [ ! -f "$suite/.ready" ]; then
  echo "vm: preparing runc's bats suite (conformance/setup.sh)"
  bash conformance/setup.sh
fi

# Limits, sized from the work (emulation is slow, and slower on a busy host): each test
# binary VM_TEST_SECONDS, each bats run VM_BATS_TEST_SECONDS a test (at least 300), the
# guest as a whole their sum plus VM_BOOT_SECONDS. The guest ends each item at its own
# limit, so the guest's is only a backstop.
test_seconds=${VM_TEST_SECONDS:-300}
bats_test_seconds=${VM_BATS_TEST_SECONDS:-150}
bats_stall_seconds=${VM_BATS_STALL_SECONDS:-300}
boot_seconds=${VM_BOOT_SECONDS:-300}
budget=$boot_seconds
for t in $tests; do budget=$((budget + test_seconds)); done
# and one binary's second run of the tests it did not pass (tests/vm/limit.sh).
[ -z "$tests" ] || budget=$((budget + test_seconds))

# Of each bats file, only the tests that need the guest: those whose body deals with
# cgroups (v2 here, v1 on the host), systemd or criu; in the systemd guest, those that check
# what the systemd driver does (their body names systemd: check_systemd_value,
# RUNC_USE_SYSTEMD), since the cgroup v2 guest runs the rest with the cgroupfs driver. The
# host's run of the whole suite (make conformance) covers the rest. Each file's selection
# goes to the guest as a regex for `bats --filter` (empty: the whole file) and a time limit.
need_re="cgroup|systemd|criu" every_re="criu|cgroups_v2|systemd"
[ -z "$systemd" ] || need_re="systemd" every_re="systemd"
# (One per run, so that two runs side by side, say the systemd and the SELinux guest, keep
# their own.)
mkdir -p "$ws/conformance/work"
select_dir=$(mktemp -d "$ws/conformance/work/vm-select.XXXXXX")
trap 'rm -rf "$select_dir"' EXIT
selected_bats=""
for f in $vm_bats; do
  src=$suite/tests/integration/$f
  [ -f "$src" ] || { echo "FAIL vm tests: no $f in the suite" >&2; exit 1; }
  # (A file whose setup requires such a host needs the guest for every test.)
  names=$(awk -v need="$need_re" -v all="requires.*($every_re)" '
               /^@test "/ { name = $0; sub(/^@test "/, "", name); sub(/" *\{ *$/, "", name); body = "" }
               name == "" && $0 ~ all { every = 1 }
               name != "" { body = body "\n" $0 }
               /^}/ && name != "" { if (every || body ~ need) print name; name = "" }' "$src" |
           { if [ -n "${VM_BATS_EXCLUDE:-}" ]; then grep -vE -- "$VM_BATS_EXCLUDE" || true; else cat; fi; })
  all=$(grep -c '^@test ' "$src")
  n=$(grep -c . <<<"$names" || true)
  [ "$n" -gt 0 ] || { echo "vm: $f: no test needs the guest"; continue; }
  if [ "$n" = "$all" ]; then
    : > "$select_dir/$f.re"
  else
    # An anchored alternation of the names, each with regex characters escaped.
    sed 's/[][\.*^$()+?{}|]/\\&/g' <<<"$names" | paste -sd'|' | sed 's/^/^(/; s/$/)$/' > "$select_dir/$f.re"
  fi
  limit=$((n * bats_test_seconds < 300 ? 300 : n * bats_test_seconds))
  echo "$limit" > "$select_dir/$f.limit"
  budget=$((budget + 3 * limit)) # brig, runc, brig again
  selected_bats="$selected_bats $f"
  echo "vm: $f: $n of $all tests need the guest, ${limit}s a runtime"
done
vm_bats=${selected_bats# }

# The guest's /etc is the host's, read-only; checkpoint.bats writes criu's
# /etc/criu/default.conf, so the guest covers /etc/criu with a tmpfs, which
# needs the (empty) directory here. criu reads nothing from an empty one.
[ -z "$vm_bats" ] || mkdir -p /etc/criu

work=$(mktemp -d /tmp/brig-vm.XXXXXX)
cleanup() {
  rm -rf "$select_dir"
  [ "${VM_KEEP:-}" = 1 ] && echo "vm: kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# Modules for virtio-pci, 9p and virtio-blk, dependencies first.
declare -A seen=()
order=()
add_mod() { # path relative to $moddir
  local m=$1 d
  [ -n "${seen[$m]:-}" ] && return
  seen[$m]=1
  for d in $(awk -F': ' -v m="$m" '$1 == m { print $2 }' "$moddir/modules.dep"); do
    add_mod "$d"
  done
  order+=("$m")
}
for name in virtio_pci 9pnet_virtio 9p virtio_blk $([ -n "$systemd" ] && echo overlay); do
  m=$(grep -E "/$name\.ko:" "$moddir/modules.dep" | cut -d: -f1)
  [ -n "$m" ] || { echo "FAIL vm tests: $moddir has no $name module" >&2; exit 1; }
  add_mod "$m"
done

ird=$work/initramfs
mkdir -p "$ird/bin" "$ird/modules"
cp /bin/busybox "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp tests/vm/init "$ird/init"
chmod 755 "$ird/init"
mods=""
for m in "${order[@]}"; do
  cp "$moddir/$m" "$ird/modules/"
  mods="$mods ${m##*/}"
done
cat > "$ird/vm.env" <<ENV
VM_MODULES="$mods"
VM_GUEST_SCRIPT="$ws/tests/vm/$([ -n "$systemd" ] && echo guest-systemd.sh || echo guest.sh)"
VM_SYSTEMD="$systemd"
VM_TESTS="$test_bins"
VM_TEST_ARGS="${1:-}"
BRIG="${VM_BRIG:-$target/release/brig}"
BRIG_SHIM="$target/release/containerd-shim-brig-v2"
VM_BATS="$vm_bats"
VM_BATS_SUITE="$suite"
VM_BATS_SELECT="$select_dir"
VM_TEST_SECONDS="$test_seconds"
VM_BATS_STALL_SECONDS="$bats_stall_seconds"
VM_KEEP_DIRS="$ws $target"
BRIG_VM_LSM="$([ "${VM_SELINUX:-}" = 1 ] && echo selinux || echo apparmor)"
ENV
# VM_SELINUX=1: a guest with SELinux as its LSM (instead of AppArmor) and Debian's reference
# policy, compiled here, loaded by init (permissive: the 9p root has no labels).
lsm_args=""
if [ "${VM_SELINUX:-}" = 1 ]; then
  echo "vm: compiling Debian's reference policy for the SELinux guest (tests/vm/selinux-policy.sh)"
  se_start=$(date +%s)
  policy=$(bash tests/vm/selinux-policy.sh "$work/selinux")
  cp "$policy" "$ird/selinux-policy"
  echo "vm: policy compiled in $(($(date +%s) - se_start))s"
  lsm_args="security=selinux"
fi
(cd "$ird" && find . | cpio -o -H newc --quiet) | gzip -1 > "$work/initrd.gz"
# A small disk, so that io.max has a block device to throttle.
truncate -s 64M "$work/disk.img"

# KVM where it can boot a stock kernel; a kvm_pvm host (PVM nested
# virtualization) runs only PVM-enabled guest kernels, so there the guest is
# emulated (TCG), which is slower but runs the same tests.
accel=${VM_ACCEL:-}
if [ -z "$accel" ]; then
  if [ -d /sys/module/kvm_pvm ]; then
    echo "vm: /dev/kvm is PVM (kvm_pvm), which boots only PVM guest kernels: emulating the guest (TCG)"
    accel=tcg
  else
    accel=kvm
  fi
fi
case $accel in
  kvm) accel_args=(-enable-kvm -cpu host) ;;
  *) accel_args=(-accel tcg,thread=multi -cpu max) ;;
esac

# cgroup v2 only, or (VM_SYSTEMD=hybrid) systemd's hybrid layout: the v1 controllers, and
# cgroup2 at /sys/fs/cgroup/unified for systemd's own tracking.
cg_args="cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
[ "$systemd" != hybrid ] || cg_args="systemd.unified_cgroup_hierarchy=0"
timeout=${VM_TIMEOUT:-$budget}
echo "vm: booting $kver ($accel), limit ${timeout}s:$(for t in $tests $vm_bats; do printf ' %s' "$t"; done)"
log=$work/console.log
set +e
timeout "$timeout" qemu-system-x86_64 \
  "${accel_args[@]}" -smp 2 -m 2048 -nographic -no-reboot -nic none \
  -kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 ${VM_KERNEL_ARGS:-quiet loglevel=3} panic=-1 $lsm_args $cg_args" \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -drive file="$work/disk.img",format=raw,if=virtio \
  </dev/null 2>&1 | tee "$log"
qrc=${PIPESTATUS[0]}
set -e
verdict=$(grep -a 'BRIG-VM-RESULT:' "$log" | tail -1 | tr -d '\r')
# The summary again, below the console output: each item's verdict and time.
grep -a '^\(guest: \(bats .* pass/fail/skip\|PASS\|FAIL\|bats .* took\|.* timed out\|RETRY\|.* passed on retry\)\|vm systemd[a-z-]* bats: \)' "$log" |
  tr -d '\r' | sed 's/^guest/vm/' || true
case "$verdict" in
  *"rc=0") echo "PASS vm tests ($([ "$systemd" = hybrid ] && echo "systemd hybrid cgroup v1" || echo "cgroup v2") guest, kernel $kver)"; exit 0 ;;
  "") running=$(grep -a '^guest: === ' "$log" | tail -1 | tr -d '\r' | sed 's/^guest: === //')
      [ "$qrc" = 124 ] && echo "FAIL vm tests: guest timed out after ${timeout}s, while running: ${running:-(nothing yet: boot)}" \
        || echo "FAIL vm tests: guest gave no verdict (qemu exit $qrc), last running: ${running:-(nothing yet: boot)}"; exit 1 ;;
  *) echo "FAIL vm tests: ${verdict#BRIG-VM-RESULT: }"; exit 1 ;;
esac
