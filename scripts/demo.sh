#!/usr/bin/env bash
# Makes a busybox bundle and runs a container with brig that shows it is
# isolated: its own hostname, PID 1, its own mount table, its limits.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
brig=${BRIG:-$top/target/release/brig}
work=$(mktemp -d /tmp/brig-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev" "$work/rootfs/tmp"
chmod 755 "$work" "$work/rootfs"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
(cd "$work" && "$brig" spec)
python3 - "$work/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["hostname"] = "brig-demo"
c["process"]["args"] = ["sh", "-c",
    "echo \"hostname: $(hostname)\"; echo \"my pid: $$\"; echo 'processes:'; ps;"
    " echo 'mounts:'; cat /proc/mounts; echo \"memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\";"
    " echo \"pids limit: $(cat /sys/fs/cgroup/pids/pids.max)\"; grep Cap /proc/self/status"]
c["linux"]["resources"] = {"memory": {"limit": 67108864}, "pids": {"limit": 32}}
json.dump(c, open(p, "w"), indent=2)
PY
echo "== brig run (bundle $work)"
"$brig" --root "$work/state" run --bundle "$work" "demo-$$"
echo "== host hostname: $(hostname); the container's exited with status $?"
