# Sourced by the systemd guest's scripts: a plain user (brigrl) with a running user manager
# (user@UID.service, its session bus from Debian's dbus-user-session at $rt/bus), and asu to
# run a command as that user with a login session's environment. Sets ru, uid, rt, mgr.
ru=brigrl
useradd -m -u 1500 "$ru" 2>/dev/null || id "$ru" >/dev/null
uid=$(id -u "$ru")
rt=/run/user/$uid
mgr=/sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service
systemctl start "user@$uid.service" ||
  journalctl -b -u "user@$uid.service" --no-pager -o cat | tail -20 | sed 's/^/guest: user@.service: /'
for _ in $(seq 60); do [ -S "$rt/bus" ] && break; sleep 1; done
check "user@$uid.service active, its bus at $rt/bus" test -S "$rt/bus"
asu() { runuser -u "$ru" -- env XDG_RUNTIME_DIR="$rt" DBUS_SESSION_BUS_ADDRESS="unix:path=$rt/bus" HOME="/home/$ru" "$@"; }
