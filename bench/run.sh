#!/usr/bin/env bash
# Benchmark brig against runc and crun in one run and print ratios.
#
#   sudo bench/run.sh
#
# Environment:
#   BRIG      path of the brig binary   (default: <repo>/target/release/brig)
#   RUNC      path of runc              (default: runc from PATH)
#   CRUN      path of crun              (default: crun from PATH)
#   RUNS      hyperfine --runs          (default: 30)
#   WARMUP    hyperfine --warmup        (default: 3)
#   RSS_RUNS  runs for the peak-RSS median (default: 9)
#
# Only reports numbers; it never fails because something is slow.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
WORK="$BENCH_DIR/work"

BRIG=${BRIG:-$REPO_DIR/target/release/brig}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
RSS_RUNS=${RSS_RUNS:-9}

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
ensure_pkgs hyperfine runc crun busybox-static time jq util-linux mount

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
declare -A RT_PATH=()
if [ -x "$BRIG" ]; then
    NAMES+=(brig); RT_PATH[brig]=$BRIG
else
    printf 'brig binary not found at %s (set BRIG=...); benchmarking runc and crun only\n' "$BRIG"
fi
NAMES+=(crun runc)
RT_PATH[crun]=$CRUN
RT_PATH[runc]=$RUNC

cleanup_root() { # name: force-delete leftovers in that runtime's --root
    local name=$1 root="$WORK/root-$1" id
    [ -d "$root" ] || return 0
    for id in $(wrap_cmd list "${RT_PATH[$name]}" "$root" 2>/dev/null || true); do
        wrap_cmd kill "${RT_PATH[$name]}" "$root" "$id" >/dev/null 2>&1 || true
    done
    rm -rf "$root"
}
on_exit() {
    local n
    for n in "${NAMES[@]}"; do cleanup_root "$n" || true; done
    devnull_fix || true
}

# ---------------------------------------------------------------- bundle
log "building busybox bundle in $WORK/bundle"
mkdir -p "$WORK"
rm -rf "$WORK/bundle" "$WORK/results"
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
BUNDLE="$WORK/bundle"
# A second bundle on the same rootfs whose process stays up, for exec.
mkdir -p "$WORK/sleeper"
jq --arg rootfs "$ROOTFS" '.process.args = ["/bin/sleep", "100000"] | .root.path = $rootfs' \
    "$BUNDLE/config.json" >"$WORK/sleeper/config.json"
SLEEPER="$WORK/sleeper"

# ---------------------------------------------------------------- wrapper
# crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not
# supported") when /sys/fs/cgroup/unified is a cgroup2 mount listing
# controllers. Every runtime invocation (all three runtimes, same cost) goes
# through:  unshare -m --propagation private /bin/sh ns.sh MODE ...
# where ns.sh over-mounts unified/cgroup.controllers with an empty file in
# that private mount namespace. The host's mounts are never changed.
: >"$WORK/empty"
MOUNT_LINE=":"
if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null || true)" = cgroup2fs ] \
   && [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    MOUNT_LINE="mount --bind '$WORK/empty' /sys/fs/cgroup/unified/cgroup.controllers"
    WRAP_NOTE="private mount ns with /sys/fs/cgroup/unified/cgroup.controllers over-mounted empty (hybrid host)"
else
    WRAP_NOTE="private mount ns (no hybrid cgroup2 mount to hide)"
fi
cat >"$WORK/ns.sh" <<EOF
# generated by bench/run.sh -- runs inside 'unshare -m --propagation private'
# usage: ns.sh MODE RUNTIME ROOT [ARG]
set -e
$MOUNT_LINE
mode=\$1 rt=\$2 root=\$3
id=b\$\$
case \$mode in
noop)  exec /bin/true ;;
run)   exec "\$rt" --root "\$root" run --bundle "$BUNDLE" "\$id" ;;
rss)   exec /usr/bin/time -v -o "\$4" "\$rt" --root "\$root" run --bundle "$BUNDLE" "\$id" ;;
cycle)
    "\$rt" --root "\$root" create --bundle "$BUNDLE" "\$id"
    "\$rt" --root "\$root" start "\$id"
    n=0
    while :; do
        s=\$("\$rt" --root "\$root" state "\$id")
        case \$s in *'"stopped"'*) break ;; esac
        n=\$((n + 1))
        if [ "\$n" -ge 5000 ]; then
            "\$rt" --root "\$root" delete --force "\$id" || true
            echo "container \$id never stopped" >&2; exit 1
        fi
    done
    exec "\$rt" --root "\$root" delete "\$id" ;;
sleeper) exec "\$rt" --root "\$root" run -d --bundle "$SLEEPER" "\$4" </dev/null >/dev/null 2>&1 ;;
exec)  exec "\$rt" --root "\$root" exec "\$4" /bin/true ;;
list)  exec "\$rt" --root "\$root" list -q ;;
kill)  exec "\$rt" --root "\$root" delete --force "\$4" ;;
*)     echo "ns.sh: bad mode \$mode" >&2; exit 2 ;;
esac
EOF
NS_SH="$WORK/ns.sh"

wrap_cmd() { unshare -m --propagation private /bin/sh "$NS_SH" "$@"; }
# The same thing as a single string for hyperfine -N (shell-words split).
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
wrap_str() {
    local s="unshare -m --propagation private /bin/sh $(q "$NS_SH")" a
    for a in "$@"; do s+=" $(q "$a")"; done
    printf '%s' "$s"
}

trap on_exit EXIT
for n in "${NAMES[@]}"; do cleanup_root "$n"; mkdir -p "$WORK/root-$n"; done

# ---------------------------------------------------------------- measure
declare -A RUN_MS=() CYC_MS=() EXEC_MS=() RSS_KB=() STATUS=()
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)

hf() { # name json command
    hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic \
        -n "$1" --export-json "$2" "$3" >&2
}
median_ms() { jq -r '.results[0].median * 1000' "$1"; }

log "wrapper overhead alone (unshare + sh + mount + exec /bin/true)"
hf wrapper "$WORK/results/wrapper.json" "$(wrap_str noop /bin/true "$WORK")"
WRAP_MS=$(median_ms "$WORK/results/wrapper.json")

for n in "${NAMES[@]}"; do
    rt=${RT_PATH[$n]} root="$WORK/root-$n"
    log "$n ($rt): sanity run"
    if ! wrap_cmd run "$rt" "$root" </dev/null; then
        printf '%s: sanity run failed; skipping it\n' "$n"
        STATUS[$n]="failed sanity run"
        continue
    fi
    devnull_fix

    log "$n: run (/bin/true)"
    if hf "$n run" "$WORK/results/$n-run.json" "$(wrap_str run "$rt" "$root")"; then
        RUN_MS[$n]=$(median_ms "$WORK/results/$n-run.json")
    else
        STATUS[$n]+="run failed; "
    fi
    devnull_fix

    log "$n: create/start/state-until-stopped/delete cycle"
    if hf "$n cycle" "$WORK/results/$n-cycle.json" "$(wrap_str cycle "$rt" "$root")"; then
        CYC_MS[$n]=$(median_ms "$WORK/results/$n-cycle.json")
    else
        STATUS[$n]+="cycle failed; "
    fi
    devnull_fix

    log "$n: exec /bin/true into a running container"
    if wrap_cmd sleeper "$rt" "$root" "exec-$n" &&
        hf "$n exec" "$WORK/results/$n-exec.json" "$(wrap_str exec "$rt" "$root" "exec-$n")"; then
        EXEC_MS[$n]=$(median_ms "$WORK/results/$n-exec.json")
    else
        STATUS[$n]+="exec failed; "
    fi
    wrap_cmd kill "$rt" "$root" "exec-$n" >/dev/null 2>&1 || true
    devnull_fix

    log "$n: peak RSS of 'run', median of $RSS_RUNS"
    vals=()
    for i in $(seq 1 "$RSS_RUNS"); do
        out="$WORK/results/$n-rss-$i.txt"
        if wrap_cmd rss "$rt" "$root" "$out" </dev/null >/dev/null 2>&1; then
            v=$(awk -F': *' '/Maximum resident set size/ {print $2}' "$out")
            [ -n "$v" ] && vals+=("$v")
        fi
    done
    if [ "${#vals[@]}" -gt 0 ]; then
        RSS_KB[$n]=$(printf '%s\n' "${vals[@]}" | sort -n |
            awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}')
        printf '%s peak RSS samples (KB): %s\n' "$n" "${vals[*]}" >&2
    else
        STATUS[$n]+="rss failed; "
    fi
    devnull_fix
    cleanup_root "$n"; mkdir -p "$root"
done

# ---------------------------------------------------------------- report
fmt() { [ -n "${1:-}" ] && awk -v v="$1" -v p="$2" 'BEGIN {printf "%.*f", p, v}' || printf 'n/a'; }
ratio() { # a b [sub] -> (a-sub)/(b-sub)
    local a=${1:-} b=${2:-} s=${3:-0}
    if [ -n "$a" ] && [ -n "$b" ]; then
        awk -v a="$a" -v b="$b" -v s="$s" 'BEGIN {d=b-s; if (d <= 0) print "n/a"; else printf "%.2fx", (a-s)/d}'
    else
        printf 'n/a'
    fi
}

echo
echo "brig benchmark  (runs=$RUNS warmup=$WARMUP rss_runs=$RSS_RUNS, medians)"
echo "bundle: busybox /bin/true; $(uname -r), $(nproc) cpus; load avg at start: $LOAD0, at end: $(cut -d" " -f1-3 /proc/loadavg)"
echo "all runtimes invoked through the same wrapper: $WRAP_NOTE"
printf 'wrapper overhead alone: %s ms (included in every time below)\n' "$(fmt "$WRAP_MS" 2)"
echo
printf '%-8s | %14s | %16s | %15s | %13s\n' runtime "run median ms" "cycle median ms" "exec median ms" "peak RSS KB"
printf '%-8s-+-%14s-+-%16s-+-%15s-+-%13s\n' -------- -------------- ---------------- --------------- -------------
for n in brig crun runc; do
    if [ -z "${RT_PATH[$n]:-}" ]; then
        printf '%-8s | %14s | %16s | %15s | %13s   (binary missing: %s)\n' "$n" - - - - "$BRIG"
        continue
    fi
    printf '%-8s | %14s | %16s | %15s | %13s' "$n" \
        "$(fmt "${RUN_MS[$n]:-}" 2)" "$(fmt "${CYC_MS[$n]:-}" 2)" "$(fmt "${EXEC_MS[$n]:-}" 2)" "$(fmt "${RSS_KB[$n]:-}" 0)"
    [ -n "${STATUS[$n]:-}" ] && printf '   (%s)' "${STATUS[$n]%; }"
    echo
done
echo
for base in crun runc; do
    printf 'brig/%s:  run %s   cycle %s   exec %s   rss %s   | net of wrapper: run %s   cycle %s   exec %s\n' "$base" \
        "$(ratio "${RUN_MS[brig]:-}" "${RUN_MS[$base]:-}")" \
        "$(ratio "${CYC_MS[brig]:-}" "${CYC_MS[$base]:-}")" \
        "$(ratio "${EXEC_MS[brig]:-}" "${EXEC_MS[$base]:-}")" \
        "$(ratio "${RSS_KB[brig]:-}" "${RSS_KB[$base]:-}")" \
        "$(ratio "${RUN_MS[brig]:-}" "${RUN_MS[$base]:-}" "$WRAP_MS")" \
        "$(ratio "${CYC_MS[brig]:-}" "${CYC_MS[$base]:-}" "$WRAP_MS")" \
        "$(ratio "${EXEC_MS[brig]:-}" "${EXEC_MS[$base]:-}" "$WRAP_MS")"
done
echo "(ratio < 1 means brig is faster / smaller; raw hyperfine JSON in $WORK/results)"

devnull_fix
if [ "$DEVNULL_TOUCHED" -eq 1 ]; then
    echo "note: /dev/null ownership/mode was altered during the run and restored to $DEVNULL_WANT"
else
    echo "/dev/null: $(devnull_state) (unchanged)"
fi
