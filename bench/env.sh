#!/usr/bin/env bash
# Large environments: `run` of /bin/true with ENV_SIZES entries in
# process.env (default 10000 100000), brig and runc side by side, one run
# each (runc takes seconds here); prints seconds, brig/runc, and how each
# grows from the smallest size to the largest (linear: as the sizes; runc's
# de-duplication of the environment is quadratic, as brig's was: 158 s at
# 100k). 100000 entries exceed what execve takes (E2BIG): both runtimes then
# fail at execve, and what is timed is the work up to that failure.
# Both run in a private mount namespace (runc must never run outside one here).
# env: BRIG (default target/release/brig), RUNC (default runc), ENV_SIZES.
set -euo pipefail
cd "$(dirname "$0")/.."
BRIG=${BRIG:-$PWD/target/release/brig}
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
sizes=${ENV_SIZES:-10000 100000}
[ "$(id -u)" = 0 ] || { echo "bench/env.sh: needs root" >&2; exit 1; }
work=$(mktemp -d /tmp/brig-bench-env.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
ln -s busybox "$work/rootfs/bin/true"
(cd "$work" && "$RUNC" spec)
secs() { # runtime bundle -> seconds of one `run`
    local s e id="env-$RANDOM"
    s=$(date +%s.%N)
    unshare -m --propagation private "$1" --root "$work/root" run --bundle "$2" "$id" \
        </dev/null >/dev/null 2>"$work/err" ||
        echo "  (${1##*/} failed: $(tail -c 120 "$work/err"))" >&2
    e=$(date +%s.%N)
    unshare -m --propagation private "$1" --root "$work/root" delete -f "$id" >/dev/null 2>&1 || true
    awk -v s="$s" -v e="$e" 'BEGIN {printf "%.2f", e - s}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}'; }
echo
echo "large environments: run of /bin/true, seconds (one run each)"
printf '%-10s | %8s | %8s | %s\n' entries brig runc brig/runc
first="" last=""
for n in $sizes; do
    b="$work/b$n"
    mkdir -p "$b"
    jq --rawfile e <(seq 1 "$n" | awk '{printf "K%d=v%d\n", $1, $1}') \
        '.process.terminal = false | .process.args = ["true"] | .process.env += ($e | split("\n") | map(select(. != "")))' \
        "$work/config.json" >"$b/config.json"
    cp -a "$work/rootfs" "$b/rootfs"
    tb=$(secs "$BRIG" "$b")
    tr=$(secs "$RUNC" "$b")
    printf '%-10s | %8s | %8s | %s\n' "$n" "$tb" "$tr" "$(ratio "$tb" "$tr")"
    [ -n "$first" ] || first="$n $tb $tr"
    last="$n $tb $tr"
done
read -r n0 b0 r0 <<<"$first"
read -r n1 b1 r1 <<<"$last"
if [ "$n1" != "$n0" ]; then
    printf 'growth %s -> %s entries (%s times as many): brig %s, runc %s\n' "$n0" "$n1" \
        "$(awk -v a="$n1" -v b="$n0" 'BEGIN {printf "%g", a / b}')" "$(ratio "$b1" "$b0")" "$(ratio "$r1" "$r0")"
fi
