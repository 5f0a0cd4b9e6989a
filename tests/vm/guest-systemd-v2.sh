# Sourced by guest-systemd.sh in the cgroup v2 systemd guest (bundle $b, sd = brig
# --systemd-cgroup, check): a container's scope with its limits as unit properties and files,
# update through systemd, a second container joining the scope, delete removing unit and cgroup.
echo "guest: === systemd driver smoke"
(cd "$b" && "$BRIG" spec)
jq '.process.terminal = false | .process.args = ["sleep", "300"]
    | .linux.cgroupsPath = "system.slice:brig:smoke"
    | .linux.resources.memory = {"limit": 67108864} | .linux.resources.pids = {"limit": 50}
    | .linux.resources.cpu = {"quota": 50000, "period": 100000}
    | .linux.resources.unified = {"memory.min": "131072"}' \
  "$b/config.json" > "$b/c.json" && mv "$b/c.json" "$b/config.json"
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
