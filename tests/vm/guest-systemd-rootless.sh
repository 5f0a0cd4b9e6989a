# Sourced by guest-systemd.sh in the cgroup v2 systemd guest (bundle $b, check): rootless
# containers through the user's own systemd instance, as rootless podman and runc do. A plain
# user's manager (user@UID.service, its session bus from Debian's dbus-user-session) makes the
# scope of `--systemd-cgroup` with cgroupsPath user.slice:PREFIX:ID below
# user@UID.service, with memory.max and pids.max (the controllers that service delegates);
# update changes them through the user's systemd; delete removes unit and cgroup. runc does the
# same beside brig: brig must pass every check runc passes. Then a user bus that cannot be
# reached: a clear error naming it, and no state, unit or cgroup left behind.
echo "guest: === rootless through the user's systemd instance (uptime $(cut -d" " -f1 /proc/uptime)s)"
. "$(dirname "$0")/guest-systemd-user.sh"
rl_bundle=$(mktemp -d /tmp/sd-rl.XXXXXX)
cp -a "$b/rootfs" "$rl_bundle/"
chown -R "$ru" "$rl_bundle"
(cd "$rl_bundle" && asu "$BRIG" spec --rootless)
jq '.process.terminal = false | .process.args = ["sleep", "300"]
    | .linux.resources.memory = {"limit": 67108864} | .linux.resources.pids = {"limit": 40}' \
  "$rl_bundle/config.json" > "$rl_bundle/c.json" && mv "$rl_bundle/c.json" "$rl_bundle/config.json"
chown -R "$ru" "$rl_bundle"
rl_fails_brig=0 rl_fails_runc=0
declare -A rl_result=()
rl_check() { # runtime, what, command...: check, and count per runtime
  local r=$1 what=$2; shift 2
  if "$@"; then rl_result[$r:$what]=ok; echo "guest: ok: $r rootless: $what"
  else rl_result[$r:$what]=FAIL; echo "guest: FAIL: $r rootless: $what"; eval "rl_fails_$r=\$((rl_fails_$r + 1))"; fi
}
rootless_run() { # name (brig|runc), binary
  local r=$1 bin=$2 id=rl unit="$1-rl.scope"
  jq --arg p "user.slice:$r:$id" --arg root "$rl_bundle/rootfs" '.linux.cgroupsPath = $p | .root.path = $root' \
    "$rl_bundle/config.json" > "$rl_bundle/$r.json"
  local cg=$mgr/user.slice/$unit root=$rt/$r-root
  x() { asu "$bin" --systemd-cgroup --root "$root" "$@"; }
  ushow() { asu systemctl --user show -P "$1" "$unit"; }
  # (runc reads the bundle's config.json; each its own copy.)
  local bb=$rl_bundle/$r
  mkdir -p "$bb" && cp "$rl_bundle/$r.json" "$bb/config.json" && chown -R "$ru" "$bb"
  rl_check "$r" "run -d" x run -d -b "$bb" "$id"
  rl_check "$r" "unit active in the user's manager" asu systemctl --user is-active -q "$unit"
  rl_check "$r" "the scope below user@$uid.service" test -d "$cg"
  local pid
  pid=$(x state "$id" | jq -r .pid)
  echo "guest: $r rootless: init $pid in $(cat /proc/$pid/cgroup 2>&1)"
  rl_check "$r" "init in the scope" grep -qx "0::/user.slice/user-$uid.slice/user@$uid.service/user.slice/$unit" "/proc/$pid/cgroup"
  rl_check "$r" "memory.max 64M" grep -qx 67108864 "$cg/memory.max"
  rl_check "$r" "pids.max 40" grep -qx 40 "$cg/pids.max"
  rl_check "$r" "the user manager's MemoryMax" test "$(ushow MemoryMax)" = 67108864
  rl_check "$r" "the user manager's TasksMax" test "$(ushow TasksMax)" = 40
  # (Run from this system service, outside the user's delegated subtree: the exec'd process
  # cannot be moved into the scope and stays in its caller's cgroup, with either runtime.)
  rl_exec() { local o; o=$(x exec "$id" cat /proc/self/cgroup) && echo "guest: $r rootless: exec'd process in $o"; }
  rl_check "$r" "exec" rl_exec
  rl_check "$r" "update --memory 128M --pids-limit 30" x update --memory 134217728 --pids-limit 30 "$id"
  rl_check "$r" "memory.max 128M after update" grep -qx 134217728 "$cg/memory.max"
  rl_check "$r" "pids.max 30 after update" grep -qx 30 "$cg/pids.max"
  rl_check "$r" "the user manager's MemoryMax after update" test "$(ushow MemoryMax)" = 134217728
  rl_check "$r" "delete -f" x delete -f "$id"
  rl_check "$r" "no unit after delete" bash -c "! runuser -u $ru -- env XDG_RUNTIME_DIR=$rt systemctl --user is-active -q $unit"
  rl_check "$r" "no cgroup after delete" test ! -e "$cg"
}
rootless_run brig "$BRIG"
rootless_run runc "$(command -v runc)"
ahead=""
for k in "${!rl_result[@]}"; do
  case $k in runc:*) [ "${rl_result[$k]}" = ok ] && [ "${rl_result[brig:${k#runc:}]}" != ok ] && ahead="$ahead [${k#runc:}]" ;; esac
done
check "brig passes every rootless check runc passes${ahead:+ (not:$ahead)}" test -z "$ahead"
check "brig passes every rootless check" test "$rl_fails_brig" = 0
echo "vm systemd rootless: brig $rl_fails_brig failed, runc $rl_fails_runc failed (of $(( ${#rl_result[@]} / 2 )) checks each)"
# A user bus that cannot be reached: an error naming it, nothing left.
no_bus() { # what, env...: brig's run must fail naming $want, leaving no state or scope
  local what=$1; shift
  local err
  err=$(runuser -u "$ru" -- env -u DBUS_SESSION_BUS_ADDRESS -u XDG_RUNTIME_DIR HOME="/home/$ru" "$@" \
    "$BRIG" --systemd-cgroup --root "$rt/nobus-root" run -d -b "$rl_bundle/brig" rl-nobus 2>&1)
  local rc=$?
  echo "guest: $what: brig said: $err"
  check "$what: run fails" test "$rc" != 0
  check "$what: the error names it" grep -qF "$want" <<<"$err"
  check "$what: no container state left" bash -c "! ls $rt/nobus-root/rl-nobus >/dev/null 2>&1"
  check "$what: no unit or cgroup left" bash -c "! ls -d $mgr/user.slice/*rl-nobus* /sys/fs/cgroup/*/*rl-nobus* 2>/dev/null | grep -q ."
}
want="user's session bus at /tmp/no-such-bus"
no_bus "a user bus address with no daemon" DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/no-such-bus
want="user's session bus at /tmp/no-runtime-dir/bus"
no_bus "an XDG_RUNTIME_DIR without a bus" XDG_RUNTIME_DIR=/tmp/no-runtime-dir
want="neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set"
no_bus "no bus address at all"
rm -rf "$rl_bundle"
echo "guest: rootless through the user's systemd: $fails failed so far (uptime $(cut -d" " -f1 /proc/uptime)s)"
