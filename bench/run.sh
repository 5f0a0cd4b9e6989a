#!/usr/bin/env bash
# Benchmark brig against runc and crun in one run and print ratios.
#
#   sudo bench/run.sh
#
# Environment:
#   BRIG      path of the brig binary   (default: <repo>/target/release/brig)
#   RUNC      path of runc              (default: runc from PATH)
#   CRUN      path of crun              (default: crun from PATH)
#   RUNS      timed runs of each runtime and case (default: 40); medians are reported
#   WARMUP    untimed rounds first (default: 3)
#   RSS_RUNS  runs for the peak-RSS median (default: 9)
#   SCALE     containers of the scale table (default: 100; 0 leaves it out)
#
# The runtimes take turns: each round runs every runtime once, in an order that rotates
# from round to round, so that a busy spell of a shared machine falls on all of them alike.
# Only reports numbers; it never fails because something is slow.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
WORK="$BENCH_DIR/work"

BRIG=${BRIG:-$REPO_DIR/target/release/brig}
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-3}
RSS_RUNS=${RSS_RUNS:-9}
SCALE=${SCALE:-100}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (runtimes need it)"

# ---------------------------------------------------------------- packages
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
}
ensure_pkgs runc crun busybox-static time jq util-linux mount

RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
CRUN=${CRUN:-$(command -v crun || echo /usr/bin/crun)}

# ---------------------------------------------------------------- /dev/null guard
# crun may fchown/fchmod the container's stdio; when that stdio is the host's
# /dev/null it can end up altered. Record its state and restore it on exit.
DEVNULL_WANT="root:root 666"
devnull_state() { stat -c '%U:%G %a' /dev/null; }
devnull_fix() {
    local now
    now=$(devnull_state)
    if [ "$now" != "$DEVNULL_WANT" ]; then
        printf 'note: /dev/null was "%s", restoring to %s\n' "$now" "$DEVNULL_WANT" >&2
        chown root:root /dev/null
        chmod 0666 /dev/null
        DEVNULL_TOUCHED=1
    fi
}
DEVNULL_TOUCHED=0
devnull_fix

# ---------------------------------------------------------------- runtimes
NAMES=()
RT_ARGS=()
if [ -x "$BRIG" ]; then
    NAMES+=(brig)
    RT_ARGS+=("brig=$BRIG")
else
    printf 'brig binary not found at %s (set BRIG=...); benchmarking runc and crun only\n' "$BRIG"
fi
NAMES+=(crun runc)
RT_ARGS+=("crun=$CRUN" "runc=$RUNC")

# ---------------------------------------------------------------- bundle
log "building busybox bundle in $WORK/bundle"
mkdir -p "$WORK"
rm -rf "$WORK/bundle" "$WORK/sleeper" "$WORK/seccomp" "$WORK/results" "$WORK"/root-*
mkdir -p "$WORK/bundle/rootfs" "$WORK/results"
ROOTFS="$WORK/bundle/rootfs"
mkdir -p "$ROOTFS"/{bin,sbin,etc,proc,sys,dev,tmp,root}
chmod 0755 "$ROOTFS"
chmod 1777 "$ROOTFS/tmp"
install -m 0755 /bin/busybox "$ROOTFS/bin/busybox"
for applet in $("$ROOTFS/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
done
cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
# `runc spec` refuses to overwrite, and writes into the cwd.
(cd "$WORK/bundle" && "$RUNC" spec)
jq '.ociVersion = "1.0.2"
    | .process.terminal = false
    | .process.args = ["/bin/true"]' \
    "$WORK/bundle/config.json" >"$WORK/bundle/config.json.new"
mv "$WORK/bundle/config.json.new" "$WORK/bundle/config.json"
# A second bundle on the same rootfs whose process stays up, for exec and the scale table.
mkdir -p "$WORK/sleeper"
jq --arg rootfs "$ROOTFS" '.process.args = ["/bin/sleep", "100000"] | .root.path = $rootfs' \
    "$WORK/bundle/config.json" >"$WORK/sleeper/config.json"

# A third bundle: the first with a seccomp profile of the size containerd, docker and podman
# pass, the syscalls podman's default profile (containers-common) allows on amd64 without
# conditions, for the three x86 architectures. Left out without that file.
SECCOMP_JSON=/usr/share/containers/seccomp.json
if [ -f "$SECCOMP_JSON" ]; then
    mkdir -p "$WORK/seccomp"
    jq '[.syscalls[] | select(.action == "SCMP_ACT_ALLOW" and ((.args // []) | length) == 0
            and ((.excludes // {}) | length) == 0
            and (((.includes // {}) | keys) - ["arches"] | length) == 0
            and ((.includes.arches // ["amd64"]) | index("amd64")) != null) | .names[]] | unique' \
        "$SECCOMP_JSON" >"$WORK/seccomp/names.json"
    jq --arg rootfs "$ROOTFS" --slurpfile n "$WORK/seccomp/names.json" '.root.path = $rootfs
        | .linux.seccomp = {defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 1,
            architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            syscalls: [{names: $n[0], action: "SCMP_ACT_ALLOW"}]}' \
        "$WORK/bundle/config.json" >"$WORK/seccomp/config.json"
else
    printf 'note: %s not found (containers-common): the seccomp column is left out\n' "$SECCOMP_JSON" >&2
fi

# ---------------------------------------------------------------- measure
# Everything runs in one private mount namespace (runc must never run outside one here),
# where crun 1.8, which refuses hybrid cgroup hosts ("cgroups in hybrid mode not
# supported"), finds /sys/fs/cgroup/unified/cgroup.controllers over-mounted with an empty
# file. The host's mounts are never changed. All three runtimes run in that same namespace.
: >"$WORK/empty"
HIDE=""
if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null || true)" = cgroup2fs ] &&
    [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    HIDE=/sys/fs/cgroup/unified/cgroup.controllers
fi
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
log "measuring (runs=$RUNS, rss_runs=$RSS_RUNS, scale=$SCALE): takes a few minutes"
set +e
unshare -m --propagation private env WORK="$WORK" HIDE="$HIDE" RUNS="$RUNS" WARMUP="$WARMUP" \
    RSS_RUNS="$RSS_RUNS" SCALE="$SCALE" bash "$BENCH_DIR/lib/measure.sh" "${RT_ARGS[@]}" \
    >"$WORK/results/table.txt"
rc=$?
set -e
devnull_fix

echo
echo "brig benchmark  (runs=$RUNS warmup=$WARMUP rss_runs=$RSS_RUNS; medians; runtimes interleaved)"
echo "bundle: busybox /bin/true; $(uname -r), $(nproc) cpus; load avg at start: $LOAD0, at end: $(cut -d" " -f1-3 /proc/loadavg)"
echo "all runtimes in one private mount namespace${HIDE:+ with $HIDE over-mounted empty (crun 1.8 refuses hybrid hosts)}"
cat "$WORK/results/table.txt"
[ "$rc" -eq 0 ] || echo "note: the measurement script exited $rc (see above)"
if [ "$DEVNULL_TOUCHED" -eq 1 ]; then
    echo "note: /dev/null ownership/mode was altered during the run and restored to $DEVNULL_WANT"
else
    echo "/dev/null: $(devnull_state) (unchanged)"
fi
