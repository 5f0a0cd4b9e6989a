#!/usr/bin/env bash
# The main job: builds examples/hello with brig-build into an OCI image
# layout, unpacks it into a bundle with umoci (the standard image → bundle
# step, as containerd or podman would do it) and runs it with brig. Then a
# second container shows brig's isolation: its own hostname, PID 1, its own
# mount table, its limits.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
brig=${BRIG:-$top/target/release/brig}
brig_build=${BRIG_BUILD:-$top/target/release/brig-build}
work=$(mktemp -d /tmp/brig-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== brig-build build -t hello:1 examples/hello"
cp -r "$top/examples/hello" "$work/hello"
cp /bin/busybox "$work/hello/busybox"
"$brig_build" --store "$work/store" build --runtime "$brig" -t hello:1 \
	-o "type=oci,dest=$work/hello-oci" "$work/hello"
umoci unpack --image "$work/hello-oci:1" "$work/hello-bundle" >/dev/null
echo "== brig run hello (bundle unpacked from the image)"
"$brig" --root "$work/state" run --bundle "$work/hello-bundle" "hello-$$" </dev/null

echo
mkdir -p "$work/isolation" && work="$work/isolation"
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
