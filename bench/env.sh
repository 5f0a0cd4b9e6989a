#!/usr/bin/env bash
# Large environments: `run` of /bin/true with ENV_SIZES entries in
# process.env (default 10000 100000), brig and runc side by side, one run
# each (runc takes seconds here); prints seconds and brig/runc. 100000
# entries exceed what execve takes (E2BIG): both runtimes then fail at
# execve, and what is timed is the work up to that failure (runc's
# de-duplication of the environment is quadratic).
# env: BRIG (default target/release/brig), ENV_SIZES.
set -euo pipefail
cd "$(dirname "$0")/.."
BRIG=${BRIG:-$PWD/target/release/brig}
sizes=${ENV_SIZES:-10000 100000}
[ "$(id -u)" = 0 ] || { echo "bench/env.sh: needs root" >&2; exit 1; }
work=$(mktemp -d /tmp/brig-bench-env.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
ln -s busybox "$work/rootfs/bin/true"
(cd "$work" && runc spec)
secs() { # runtime bundle -> seconds of one `run`
    local s e id="env-$RANDOM"
    s=$(date +%s.%N)
    "$1" --root "$work/root" run --bundle "$2" "$id" </dev/null >/dev/null 2>"$work/err" ||
        echo "  (${1##*/} failed: $(tail -c 120 "$work/err"))" >&2
    e=$(date +%s.%N)
    "$1" --root "$work/root" delete -f "$id" >/dev/null 2>&1 || true
    awk -v s="$s" -v e="$e" 'BEGIN {printf "%.2f", e - s}'
}
echo
echo "large environments: run of /bin/true, seconds (one run each)"
printf '%-10s | %8s | %8s | %s\n' entries brig runc brig/runc
for n in $sizes; do
    b="$work/b$n"
    mkdir -p "$b"
    jq --rawfile e <(seq 1 "$n" | awk '{printf "K%d=v%d\n", $1, $1}') \
        '.process.terminal = false | .process.args = ["true"] | .process.env += ($e | split("\n") | map(select(. != "")))' \
        "$work/config.json" >"$b/config.json"
    cp -a "$work/rootfs" "$b/rootfs"
    tb=$(secs "$BRIG" "$b")
    tr=$(secs runc "$b")
    printf '%-10s | %8s | %8s | %s\n' "$n" "$tb" "$tr" "$(awk -v a="$tb" -v b="$tr" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}')"
done
