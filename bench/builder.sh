#!/usr/bin/env bash
# Cold builds of each test Dockerfile (tests/testdata/dockerfiles/*/) with brig-build and with
# buildah, in one run, from the same busybox base; prints a table of medians and the ratios.
#
#   sudo bench/builder.sh
#
# Environment:
#   BRIG_BUILD  brig-build binary     (default: <repo>/target/release/brig-build)
#   BRIG        brig runtime binary   (default: <repo>/target/release/brig)
#   RUNC        runc for RUN steps    (default: /usr/sbin/runc; buildah's default crun refuses
#               this host's hybrid cgroups)
#   RUNS        builds per tool and Dockerfile (default: 5); the median is reported
#   DRIVER      buildah storage driver (default: overlay, as brig-build uses; vfs if overlay
#               cannot import the base here)
#
# "Cold": no build cache on either side (brig-build gets --no-cache; buildah gets --no-cache and
# builds without --layers), the base image already imported into both stores, RUN steps under
# the same runc, --network none. A second table times the build cache (see below). Each tool's own store receives the image; nothing is exported.
# Only reports numbers: it never fails because something is slow (a build that fails is
# reported as such and makes the exit status 1).
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
BRIG_BUILD=${BRIG_BUILD:-$REPO_DIR/target/release/brig-build}
BRIG=${BRIG:-$REPO_DIR/target/release/brig}
RUNC=${RUNC:-/usr/sbin/runc}
RUNS=${RUNS:-5}
DRIVER=${DRIVER:-overlay}
DOCKERFILES=$REPO_DIR/tests/testdata/dockerfiles

die() { printf 'bench/builder.sh: %s\n' "$*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "must run as root (builds mount overlays and run containers)"
for f in "$BRIG_BUILD" "$BRIG" "$RUNC"; do
    [ -x "$f" ] || die "$f not found (make build)"
done
command -v buildah >/dev/null || die "buildah not installed (scripts/deps.sh)"
BUSYBOX=$(command -v busybox) || die "busybox not installed (busybox-static)"

# Lower case only: buildah names an image pulled from oci:DIR after DIR.
WORK=/tmp/brig-bench-builder-$$
rm -rf "$WORK" && mkdir -p "$WORK"
trap 'buildah --root "$WORK/bh-root" --runroot "$WORK/bh-run" --storage-driver "$DRIVER" rmi -a -f >/dev/null 2>&1; rm -rf "$WORK"' EXIT
STORE=$WORK/store
bh() { buildah --root "$WORK/bh-root" --runroot "$WORK/bh-run" --storage-driver "$DRIVER" "$@"; }

# ------------------------------------------------------------------ the shared base image
# busybox with an applet symlink each, docker-library style passwd/group (user brig = 1000).
base=$WORK/base
mkdir -p "$base/rootfs"/{bin,etc,proc,sys,dev,root,mnt,usr/bin,tmp}
chmod 1777 "$base/rootfs/tmp"
cp "$BUSYBOX" "$base/rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$base/rootfs/bin/$a"
done
cat >"$base/rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
brig:x:1000:1000:brig test user:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$base/rootfs/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
brig:x:1000:
nogroup:x:65534:
EOF
echo brig-bench >"$base/rootfs/etc/hostname"
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n' >"$base/Dockerfile"
"$BRIG_BUILD" --store "$STORE" build -q -t localhost/busybox:base \
    -o "type=oci,dest=$WORK/base-oci,name=localhost/busybox:base" "$base" >/dev/null 2>&1 ||
    die "brig-build could not build the base image"
if ! id=$(bh pull -q "oci:$WORK/base-oci:base" 2>"$WORK/pull.log"); then
    [ "$DRIVER" = vfs ] && die "buildah could not import the base image: $(tail -1 "$WORK/pull.log")"
    printf 'note: buildah with %s failed (%s); using vfs\n' "$DRIVER" "$(tail -1 "$WORK/pull.log")" >&2
    rm -rf "$WORK/bh-root" "$WORK/bh-run"
    DRIVER=vfs
    id=$(bh pull -q "oci:$WORK/base-oci:base") || die "buildah could not import the base image"
fi
bh tag "$id" localhost/busybox:base || die "buildah tag failed"

# ------------------------------------------------------------------ timing
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# median_ms NAME CMD...: runs CMD $RUNS times, prints the median in ms (or "failed").
median_ms() {
    local name=$1 t0 t1 i
    shift
    local times=()
    for ((i = 0; i < RUNS; i++)); do
        t0=$(now_ms)
        if ! "$@" >"$WORK/last.log" 2>&1; then
            printf 'bench/builder.sh: %s failed:\n' "$name" >&2
            tail -5 "$WORK/last.log" >&2
            touch "$WORK/failed"
            echo failed
            return
        fi
        t1=$(now_ms)
        times+=($((t1 - t0)))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

ratio() {
    case "$1$2" in *failed*) echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}' ;; esac
}

printf '\nbrig-build vs buildah: cold build, median of %s, ms (RUN under %s, buildah storage %s)\n\n' \
    "$RUNS" "$RUNC" "$DRIVER"
printf '%-12s %14s %14s %12s %16s %16s\n' dockerfile "brig-build" "brig-build" buildah "ratio" "ratio"
printf '%-12s %14s %14s %12s %16s %16s\n' "" "(runc)" "(brig)" "(runc)" "runc/buildah" "brig/buildah"
for dir in "$DOCKERFILES"/*/; do
    [ -f "$dir/Dockerfile" ] || continue
    name=$(basename "$dir")
    a=$(median_ms "brig-build --runtime runc $name" "$BRIG_BUILD" --store "$STORE" build -q --no-cache \
        --network none --runtime "$RUNC" --build-arg FROM_CLI=cli -t "bench/$name:runc" "$dir")
    b=$(median_ms "brig-build --runtime brig $name" "$BRIG_BUILD" --store "$STORE" build -q --no-cache \
        --network none --runtime "$BRIG" --build-arg FROM_CLI=cli -t "bench/$name:brig" "$dir")
    c=$(median_ms "buildah $name" bh build -q --no-cache --pull-never --runtime "$RUNC" --network none \
        --build-arg FROM_CLI=cli -t "localhost/bench-$name:1" "$dir")
    printf '%-12s %14s %14s %12s %16s %16s\n' "$name" "$a" "$b" "$c" "$(ratio "$a" "$c")" "$(ratio "$b" "$c")"
done
printf '\nratio < 1: brig-build is faster. Compare only numbers from one run.\n'

# ------------------------------------------------------------------ build cache
# A multi-stage Dockerfile with two independent stages and a final one that copies from both.
# Each tool keeps its cache between the builds of a row (brig-build: its store; buildah:
# --layers). "cold" ignores the cache (brig-build --no-cache, buildah --no-cache --layers);
# "no change" rebuilds the same context; "one COPY changed" rewrites the source of the second
# stage's COPY before each build, so that stage's later steps and the final stage run again.
CACHE_CTX=$WORK/cache-ctx
mkdir -p "$CACHE_CTX"
cat >"$CACHE_CTX/Dockerfile" <<'EOF'
FROM localhost/busybox:base AS one
COPY one.txt /src/one.txt
RUN head -c 3000000 /dev/urandom > /blob1 && cat /src/one.txt > /one.out

FROM localhost/busybox:base AS two
COPY two.txt /src/two.txt
RUN head -c 3000000 /dev/urandom > /blob2 && cat /src/two.txt > /two.out

FROM localhost/busybox:base
COPY --from=one /one.out /blob1 /app/
COPY --from=two /two.out /blob2 /app/
ENV APP=/app
RUN ls -l /app > /app/listing
CMD ["cat", "/app/listing"]
EOF
echo one >"$CACHE_CTX/one.txt"
echo two >"$CACHE_CTX/two.txt"
touch_two() { date +%s%N >"$CACHE_CTX/two.txt"; }
bb_cache() {
    "$BRIG_BUILD" --store "$STORE" build -q --network none --runtime "$RUNC" -t bench/cache:1 "$@" "$CACHE_CTX"
}
bh_cache() {
    bh build -q --layers --pull-never --runtime "$RUNC" --network none -t localhost/bench-cache:1 "$@" "$CACHE_CTX"
}
bb_changed() { touch_two && bb_cache; }
bh_changed() { touch_two && bh_cache; }
# cache_row NAME BRIG_CMD BUILDAH_CMD [ARGS...]
cache_row() {
    local name=$1 a c
    a=$(median_ms "brig-build $name" "$2" "${@:4}")
    c=$(median_ms "buildah $name" "$3" "${@:4}")
    printf '%-18s %14s %12s %16s\n' "$name" "$a" "$c" "$(ratio "$a" "$c")"
}

printf '\nbuild cache, multi-stage (two independent stages), median of %s, ms\n\n' "$RUNS"
printf '%-18s %14s %12s %16s\n' case "brig-build" buildah "ratio"
printf '%-18s %14s %12s %16s\n' "" "(runc)" "(runc)" "brig/buildah"
cache_row "cold" bb_cache bh_cache --no-cache
bb_cache >/dev/null 2>&1
bh_cache >/dev/null 2>&1
cache_row "no change" bb_cache bh_cache
cache_row "one COPY changed" bb_changed bh_changed
printf '\nratio < 1: brig-build is faster. Compare only numbers from one run.\n'
[ ! -e "$WORK/failed" ]
