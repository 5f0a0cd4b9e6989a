#!/usr/bin/env bash
# Pod density through CRI: PODS pods (the pause sandbox plus one busybox
# container running sleep) started with crictl through containerd's CRI, for
# the `brig` handler (containerd-shim-brig-v2 with brig) and the `runc`
# handler (containerd-shim-runc-v2 with runc) in one run: seconds to start
# them all, the shims' total PSS (/proc/PID/smaps_rollup) with all running,
# and seconds to remove them all (`crictl rmp -fa`). Prints brig/runc ratios;
# never fails because of slowness.
#
# It runs in conformance/critest.sh's environment (containerd, registry,
# CNI, all in namespaces of their own), which builds the images.
#
#   sudo bench/cri.sh
# env: BRIG, BRIG_SHIM, BRIG_BUILD (default: target/release/...), PODS (100)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PODS=${PODS:-100}
export PODS

if [ -z "${CRI_SOCK:-}" ]; then
	export CRI_INSIDE="$here/cri.sh"
	exec bash "$here/../conformance/critest.sh"
fi

# --- inside critest.sh's environment ---------------------------------------------
crictl() { "$CRICTL" --timeout 300s --runtime-endpoint "unix://$CRI_SOCK" --image-endpoint "unix://$CRI_SOCK" "$@"; }
image=registry.k8s.io/e2e-test-images/busybox:1.29-2
work=$(mktemp -d)
crictl pull "$image" >/dev/null

# The pids of the processes whose executable is named $1 (comm is cut at
# 15 characters, so by /proc/PID/exe).
pids_of() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(basename "$(readlink "$p/exe" 2>/dev/null)")" = "$1" ] && echo "${p#/proc/}"
	done
	return 0
}

# PSS in kB of every process whose executable is named $1.
pss_of() {
	local total=0 pid
	for pid in $(pids_of "$1"); do
		total=$((total + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
	done
	echo "$total"
}

declare -A start_s pss_kb rm_s shims
for h in brig runc; do
	shim=containerd-shim-$h-v2
	t0=$(date +%s.%N)
	for i in $(seq 1 "$PODS"); do
		cat >"$work/pod.json" <<-EOF
			{"metadata": {"name": "bench-$h-$i", "namespace": "bench", "uid": "bench-$h-$i", "attempt": 0},
			 "log_directory": "$work/logs/$h-$i", "linux": {}}
		EOF
		cat >"$work/ctr.json" <<-EOF
			{"metadata": {"name": "sleep"}, "image": {"image": "$image"},
			 "command": ["sleep", "3600"], "log_path": "sleep.log", "linux": {}}
		EOF
		crictl run --runtime "$h" "$work/ctr.json" "$work/pod.json" >/dev/null ||
			{ echo "bench/cri.sh: pod $i with $h failed" >&2; exit 1; }
	done
	t1=$(date +%s.%N)
	running=$(crictl ps -q --state running | wc -l)
	[ "$running" -eq "$PODS" ] || { echo "bench/cri.sh: $running of $PODS containers running with $h" >&2; exit 1; }
	shims[$h]=$(pids_of "$shim" | wc -l)
	pss_kb[$h]=$(pss_of "$shim")
	crictl rmp -fa >/dev/null
	t2=$(date +%s.%N)
	start_s[$h]=$(echo "$t1 - $t0" | bc -l)
	rm_s[$h]=$(echo "$t2 - $t1" | bc -l)
	printf 'bench/cri.sh: %s: %d pods started in %.1f s, %d shims, PSS %.1f MiB, removed in %.1f s\n' \
		"$h" "$PODS" "${start_s[$h]}" "${shims[$h]}" "$(echo "${pss_kb[$h]} / 1024" | bc -l)" "${rm_s[$h]}"
done
rm -rf "$work"

ratio() { printf "%.2f" "$(echo "$1 / $2" | bc -l)"; }
echo
printf '%-24s %10s %10s %12s\n' "$PODS pods" brig runc "brig/runc"
printf '%-24s %10.1f %10.1f %12s\n' "start all (s)" "${start_s[brig]}" "${start_s[runc]}" "$(ratio "${start_s[brig]}" "${start_s[runc]}")"
printf '%-24s %10.1f %10.1f %12s\n' "shims' PSS (MiB)" "$(echo "${pss_kb[brig]} / 1024" | bc -l)" \
	"$(echo "${pss_kb[runc]} / 1024" | bc -l)" "$(ratio "${pss_kb[brig]}" "${pss_kb[runc]}")"
printf '%-24s %10.1f %10.1f %12s\n' "remove all (s)" "${rm_s[brig]}" "${rm_s[runc]}" "$(ratio "${rm_s[brig]}" "${rm_s[runc]}")"
