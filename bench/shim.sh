#!/usr/bin/env bash
# containerd-shim-brig-v2 against containerd's runc shim (io.containerd.runc.v2),
# in one run: `ctr run --rm IMAGE true` through each (hyperfine), and the
# memory of one idle shim of each (RSS and PSS). Both shims run brig
# underneath (the runc shim through BinaryName via --runc-binary), so the
# shims are what differs. Prints ratios; never fails because of slowness.
#
#   sudo bench/shim.sh
# env: BRIG, BRIG_BUILD, BRIG_SHIM (default: target/release/...), RUNS (20)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
BRIG=${BRIG:-$top/target/release/brig}
BRIG_BUILD=${BRIG_BUILD:-$top/target/release/brig-build}
BRIG_SHIM=${BRIG_SHIM:-$top/target/release/containerd-shim-brig-v2}
RUNS=${RUNS:-20}
[ "$(id -u)" -eq 0 ] || { echo "bench/shim.sh: must run as root" >&2; exit 1; }
for b in "$BRIG" "$BRIG_BUILD" "$BRIG_SHIM"; do
	[ -x "$b" ] || { echo "bench/shim.sh: missing $b (make build)" >&2; exit 1; }
done
command -v containerd >/dev/null || { echo "bench/shim.sh: containerd is not installed" >&2; exit 1; }

D=$(mktemp -d /tmp/brig-shim-bench.XXXXXX)
CPID=
cleanup() {
	for id in idle-brig idle-runc; do
		ctr -a "$D/c.sock" -n bench task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	sleep 0.5
	for id in idle-brig idle-runc; do
		ctr -a "$D/c.sock" -n bench task delete "$id" >/dev/null 2>&1 || true
		ctr -a "$D/c.sock" -n bench container rm "$id" >/dev/null 2>&1 || true
	done
	[ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null || true
	rm -rf "$D"
}
trap cleanup EXIT

mkdir -p "$D/bin"
ln -s "$BRIG_SHIM" "$D/bin/containerd-shim-brig-v2"
ln -s "$BRIG" "$D/bin/brig"
cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/c.sock"
[ttrpc]
  address = "$D/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
EOF
PATH="$D/bin:$PATH" containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 &
CPID=$!
for _ in $(seq 1 100); do
	ctr -a "$D/c.sock" version >/dev/null 2>&1 && break
	sleep 0.1
done
CTR=(ctr -a "$D/c.sock" -n bench)

# A busybox image built by brig-build.
mkdir -p "$D/ctx/rootfs/bin"
cp /bin/busybox "$D/ctx/rootfs/bin/"
for a in sh sleep true; do ln -sf busybox "$D/ctx/rootfs/bin/$a"; done
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n' >"$D/ctx/Dockerfile"
IMG=docker.io/brig/bench:latest
"$BRIG_BUILD" --store "$D/store" build -q --runtime "$BRIG" -t "$IMG" \
	-o "type=oci-archive,dest=$D/img.tar,name=$IMG" "$D/ctx" >/dev/null
"${CTR[@]}" image import "$D/img.tar" >/dev/null

# One `ctr run --rm IMAGE true` with a fresh id, through a given runtime.
cat >"$D/run-once.sh" <<EOF
#!/bin/sh
exec ctr -a "$D/c.sock" -n bench run --rm "\$@" "$IMG" b\$\$ true
EOF
chmod +x "$D/run-once.sh"
BRIG_ARGS="--runtime io.containerd.brig.v2"
RUNC_ARGS="--runtime io.containerd.runc.v2 --runc-binary $BRIG"
hyperfine -N --warmup 2 --runs "$RUNS" --style basic --export-json "$D/hf.json" \
	-n "brig shim" "$D/run-once.sh $BRIG_ARGS" \
	-n "runc-v2 shim" "$D/run-once.sh $RUNC_ARGS" >&2
brig_ms=$(jq -r '.results[0].median * 1000' "$D/hf.json")
runc_ms=$(jq -r '.results[1].median * 1000' "$D/hf.json")

# Idle memory: one sleeping container per shim.
# shellcheck disable=SC2086
"${CTR[@]}" run -d $BRIG_ARGS "$IMG" idle-brig sleep 100000 >/dev/null
# shellcheck disable=SC2086
"${CTR[@]}" run -d $RUNC_ARGS "$IMG" idle-runc sleep 100000 >/dev/null
sleep 2
mem() { # shim binary name -> "RSS PSS" in KB
	local p
	p=$(pgrep -f "^$D/bin/$1|$1 -namespace bench" | head -1 || true)
	[ -z "$p" ] && p=$(pgrep -f "$1.*-namespace bench" | head -1 || true)
	[ -n "$p" ] || { echo "n/a n/a"; return; }
	echo "$(awk '/VmRSS/ {print $2}' "/proc/$p/status") $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")"
}
read -r brss bpss < <(mem containerd-shim-brig-v2)
read -r rrss rpss < <(mem containerd-shim-runc-v2)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "n/a") printf "%.2fx", a / b; else print "n/a" }'; }
echo
echo "containerd shims, brig underneath both (runs=$RUNS, medians; $(containerd --version | awk '{print $3}'))"
printf '%-14s | %18s | %14s | %14s\n' shim "ctr run --rm ms" "idle RSS KB" "idle PSS KB"
printf '%-14s | %18.1f | %14s | %14s\n' "brig" "$brig_ms" "$brss" "$bpss"
printf '%-14s | %18.1f | %14s | %14s\n' "runc-v2" "$runc_ms" "$rrss" "$rpss"
echo "brig/runc-v2: ctr run $(ratio "$brig_ms" "$runc_ms")   RSS $(ratio "$brss" "$rrss")   PSS $(ratio "$bpss" "$rpss")"
