# Sourced by guest-systemd.sh in the hybrid systemd guest (VM_SYSTEMD=hybrid: cgroup v1
# controllers, cgroup2 at /sys/fs/cgroup/unified; bundle $b, sd = brig --systemd-cgroup,
# check): a container's scope in every v1 hierarchy systemd manages, with the limits as v1
# unit properties (MemoryLimit, CPUQuotaPerSecUSec, TasksMax) and files; cpuset, which
# systemd does not manage on v1, written by brig in a directory of its own; exec joins them
# all; update through systemd; delete removes the unit and every directory.
echo "guest: === systemd driver on cgroup v1 (hybrid)"
echo "guest: /sys/fs/cgroup: $(ls /sys/fs/cgroup | paste -sd' '), unified: $(stat -f -c %T /sys/fs/cgroup/unified 2>&1)"
(cd "$b" && "$BRIG" spec)
jq '.process.terminal = false | .process.args = ["sleep", "300"]
    | .linux.cgroupsPath = "system.slice:brig:v1"
    | .linux.resources.memory = {"limit": 67108864} | .linux.resources.pids = {"limit": 50}
    | .linux.resources.cpu = {"quota": 50000, "period": 100000, "shares": 512, "cpus": "1"}' \
  "$b/config.json" > "$b/c.json" && mv "$b/c.json" "$b/config.json"
u=brig-v1.scope
at() { echo "/sys/fs/cgroup/$1/system.slice/$u"; } # hierarchy -> the container's directory
prop() { systemctl show -P "$1" "$u"; }
check "run -d in a systemd scope (v1)" sd run -d -b "$b" v1
check "unit $u active" systemctl is-active -q "$u"
check "memory.limit_in_bytes 64M" grep -qx 67108864 "$(at memory)/memory.limit_in_bytes"
check "systemd's MemoryLimit" test "$(prop MemoryLimit)" = 67108864
check "cpu.cfs_quota_us 50000" grep -qx 50000 "$(at cpu)/cpu.cfs_quota_us"
check "cpu.cfs_period_us 100000" grep -qx 100000 "$(at cpu)/cpu.cfs_period_us"
check "systemd's CPUQuotaPerSecUSec" test "$(prop CPUQuotaPerSecUSec)" = 500ms
check "cpu.shares 512" grep -qx 512 "$(at cpu)/cpu.shares"
check "systemd's CPUShares" test "$(prop CPUShares)" = 512
check "pids.max 50" grep -qx 50 "$(at pids)/pids.max"
check "systemd's TasksMax" test "$(prop TasksMax)" = 50
check "cpuset.cpus 1 (brig's own write)" grep -qx 1 "$(at cpuset)/cpuset.cpus"
check "systemd's AllowedCPUs 1 (recorded, as runc)" test "$(prop AllowedCPUs)" = 1
pid=$(sd state v1 | jq .pid)
for h in memory cpu,cpuacct pids cpuset devices name=systemd ""; do
  check "container init in the scope's ${h:-unified} cgroup" \
    grep -q "^[0-9]*:$h:/system.slice/$u\$" "/proc/$pid/cgroup"
done
check "systemd lists the init in the unit" \
  bash -c "systemd-cgls --no-pager -u $u | grep -qw $pid"
ex=$(sd exec v1 cat /proc/self/cgroup)
for h in memory cpuset pids; do
  check "exec'd process in the ${h} cgroup" grep -q ":$h:/system.slice/$u\$" <<<"$ex"
done
check "update --memory 128M --cpu-quota 20000 --pids-limit 60 --cpuset-cpus 0" \
  sd update --memory 134217728 --cpu-quota 20000 --pids-limit 60 --cpuset-cpus 0 v1
check "memory.limit_in_bytes 128M after update" grep -qx 134217728 "$(at memory)/memory.limit_in_bytes"
check "systemd's MemoryLimit after update" test "$(prop MemoryLimit)" = 134217728
check "cpu.cfs_quota_us 20000 after update" grep -qx 20000 "$(at cpu)/cpu.cfs_quota_us"
check "systemd's CPUQuotaPerSecUSec after update" test "$(prop CPUQuotaPerSecUSec)" = 200ms
check "pids.max 60 after update" grep -qx 60 "$(at pids)/pids.max"
check "systemd's TasksMax after update" test "$(prop TasksMax)" = 60
check "cpuset.cpus 0 after update" grep -qx 0 "$(at cpuset)/cpuset.cpus"
check "systemd's AllowedCPUs 0 after update" test "$(prop AllowedCPUs)" = 0
# systemd's v1 device rules deny every device first: a process that keeps opening /dev/null
# while update sets properties must never be refused (the container is frozen meanwhile).
sd exec -d v1 sh -c 'while :; do { : >/dev/null; } 2>>/dev/shm/devnull.err; done'
for _ in 1 2 3 4 5; do sd update --pids-limit 60 v1; done
err=$(sd exec v1 cat /dev/shm/devnull.err | head -c 200)
check "the loop ran (its error file exists)" sd exec v1 sh -c 'test -e /dev/shm/devnull.err'
check "/dev/null never refused during 5 updates${err:+ (got: $err)}" test -z "$err"
check "delete -f" sd delete -f v1
check "no unit after delete" bash -c "! systemctl is-active -q $u"
left=$(ls -d /sys/fs/cgroup/*/system.slice/"$u" 2>/dev/null | paste -sd' ')
check "no cgroup directory after delete${left:+ (left: $left)}" test -z "$left"
echo "guest: systemd driver on cgroup v1: $fails failed so far"
# Rootless on cgroup v1: the user's systemd cannot delegate v1 hierarchies; refused with an
# error saying so, before anything is made (as runc refuses it), with a user manager running.
echo "guest: === rootless --systemd-cgroup on cgroup v1: refused"
. "$(dirname "$0")/guest-systemd-user.sh"
rl=$(mktemp -d /tmp/sd-rl.XXXXXX)
cp -a "$b/rootfs" "$rl/" && chown -R "$ru" "$rl"
(cd "$rl" && asu "$BRIG" spec --rootless)
jq '.process.args = ["true"] | .linux.cgroupsPath = "user.slice:brig:rlv1"' "$rl/config.json" > "$rl/c.json" &&
  mv "$rl/c.json" "$rl/config.json" && chown "$ru" "$rl/config.json"
err=$(asu "$BRIG" --systemd-cgroup --root "$rt/brig-root" run -b "$rl" rlv1 2>&1)
rc=$?
echo "guest: brig said: $err"
echo "guest: runc said: $(asu runc --systemd-cgroup --root "$rt/runc-root" run -b "$rl" rlv1r 2>&1 | tail -1)"
check "rootless run on v1 fails" test "$rc" != 0
check "the error says cgroup v2 is needed" grep -qF "need cgroup v2" <<<"$err"
check "no container state left" test ! -e "$rt/brig-root/rlv1"
no_unit() { ! asu systemctl --user list-units --all --no-legend | grep -q rlv1; }
check "no unit left in the user's manager" no_unit
left=$(ls -d /sys/fs/cgroup/*/user.slice/user-"$uid".slice/user@"$uid".service/user.slice/*rlv1* 2>/dev/null | paste -sd' ')
check "no cgroup directory left${left:+ (left: $left)}" test -z "$left"
rm -rf "$rl"
echo "guest: rootless on cgroup v1: $fails failed so far"
