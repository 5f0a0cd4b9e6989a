#!/usr/bin/env bash
# brig-build against BuildKit (the builder pipelines use: Debian's dockerd with BuildKit built in,
# a dockerd of the bench's own, DOCKER_BUILDKIT=1) and buildah, in one run, from the same busybox
# base; prints tables of medians and the ratios. BuildKit is the anchor: the aims (issue 17) are
# cold builds at most 0.5x BuildKit's and cached rebuilds at most 0.25x.
#
# Tables: cold builds of each test Dockerfile (tests/testdata/dockerfiles/*/); the build cache of
# a multi-stage Dockerfile (cold, no change, one COPY changed); scenarios (a large context, many
# small layers, a Debian base with apt-get).
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
#   LARGE_MB, LARGE_FILES  the large context's size and file count (default 1024 MB in 50000)
#   SCENARIOS   which scenario rows run (default "large layers debian"; empty: none)
#   NO_BUILDKIT=1  leave BuildKit out (its column shows "-")
# "Cold": no build cache on any side (brig-build and BuildKit get --no-cache; buildah gets
# --no-cache and builds without --layers), the base image already in every store, RUN steps under
# runc (BuildKit: dockerd's containerd runs Debian's runc), --network none. Each tool's own store
# receives the image; nothing is exported. The scenarios time brig-build and BuildKit only.
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
LARGE_MB=${LARGE_MB:-1024}
LARGE_FILES=${LARGE_FILES:-50000}
SCENARIOS=${SCENARIOS-large layers debian}
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
STORE=$WORK/store
bh() { buildah --root "$WORK/bh-root" --runroot "$WORK/bh-run" --storage-driver "$DRIVER" "$@"; }

# ------------------------------------------------------------------ BuildKit: a dockerd of our own
DK=$WORK/dockerd
BUILDKIT=""
cleanup() {
    if [ -f "$DK/docker.pid" ]; then
        kill "$(cat "$DK/docker.pid")" 2>/dev/null
        for _ in $(seq 50); do [ -f "$DK/docker.pid" ] || break; sleep 0.2; done
    fi
    bh rmi -a -f >/dev/null 2>&1
    # dockerd leaves its overlay and netns mounts under its roots when killed hard.
    grep -o " $WORK/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
dk() { /usr/bin/docker -H "unix://$DK/docker.sock" "$@"; }
bk() { DOCKER_BUILDKIT=1 dk build "$@"; }
if [ -n "${NO_BUILDKIT:-}" ]; then
    printf 'note: NO_BUILDKIT set: BuildKit left out\n' >&2
elif [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ]; then
    printf 'note: dockerd not installed (docker.io): BuildKit left out\n' >&2
else
    mkdir -p "$DK"
    /usr/sbin/dockerd --data-root "$DK/data" --exec-root "$DK/exec" --pidfile "$DK/docker.pid" \
        -H "unix://$DK/docker.sock" --iptables=false --ip-masq=false --bridge=none \
        </dev/null >"$DK/dockerd.log" 2>&1 &
    for _ in $(seq 150); do dk version >/dev/null 2>&1 && { BUILDKIT=1; break; }; sleep 0.2; done
    [ -n "$BUILDKIT" ] || printf 'note: dockerd did not start (%s): BuildKit left out\n' \
        "$(tail -1 "$DK/dockerd.log")" >&2
fi

# ------------------------------------------------------------------ the shared base image
# busybox with an applet symlink each, docker-library style passwd/group (user brig = 1000).
base=$WORK/base
mkdir -p "$base/rootfs"/{bin,etc,proc,sys,dev,root,mnt,usr/bin,tmp}
chmod 1777 "$base/rootfs/tmp"
cp "$BUSYBOX" "$base/rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$base/rootfs/bin/$a"
done
cat >"$base/rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
brig:x:1000:1000:brig test user:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$base/rootfs/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
brig:x:1000:
nogroup:x:65534:
GROUP
echo brig-bench >"$base/rootfs/etc/hostname"
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n' >"$base/Dockerfile"
"$BRIG_BUILD" --store "$STORE" build -q -t localhost/busybox:base \
    -o "type=oci,dest=$WORK/base-oci,name=localhost/busybox:base" \
    -o "type=docker-archive,dest=$WORK/base-docker.tar,name=localhost/busybox:base" "$base" \
    >/dev/null 2>&1 || die "brig-build could not build the base image"
if ! id=$(bh pull -q "oci:$WORK/base-oci:base" 2>"$WORK/pull.log"); then
    [ "$DRIVER" = vfs ] && die "buildah could not import the base image: $(tail -1 "$WORK/pull.log")"
    printf 'note: buildah with %s failed (%s); using vfs\n' "$DRIVER" "$(tail -1 "$WORK/pull.log")" >&2
    rm -rf "$WORK/bh-root" "$WORK/bh-run"
    DRIVER=vfs
    id=$(bh pull -q "oci:$WORK/base-oci:base") || die "buildah could not import the base image"
fi
bh tag "$id" localhost/busybox:base || die "buildah tag failed"
if [ -n "$BUILDKIT" ] && ! dk load -q -i "$WORK/base-docker.tar" >/dev/null 2>"$WORK/load.log"; then
    printf 'note: docker load of the base failed (%s): BuildKit left out\n' "$(tail -1 "$WORK/load.log")" >&2
    BUILDKIT=""
fi

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
# bk_ms NAME ARGS...: median_ms of a BuildKit build, "-" when BuildKit is left out.
bk_ms() {
    local name=$1
    shift
    if [ -n "$BUILDKIT" ]; then median_ms "BuildKit $name" bk "$@"; else echo -; fi
}

ratio() {
    case "$1$2" in *failed* | *-*) echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}' ;; esac
}

printf '\ncold build, median of %s, ms (RUN under %s; buildah storage %s)\n\n' "$RUNS" "$RUNC" "$DRIVER"
printf '%-12s %12s %12s %10s %10s %14s %14s\n' dockerfile "brig-build" "brig-build" BuildKit buildah "ratio" "ratio"
printf '%-12s %12s %12s %10s %10s %14s %14s\n' "" "(runc)" "(brig)" "" "(runc)" "bb/BuildKit" "bb/buildah"
for dir in "$DOCKERFILES"/*/; do
    [ -f "$dir/Dockerfile" ] || continue
    name=$(basename "$dir")
    a=$(median_ms "brig-build --runtime runc $name" "$BRIG_BUILD" --store "$STORE" build -q --no-cache \
        --network none --runtime "$RUNC" --build-arg FROM_CLI=cli -t "bench/$name:runc" "$dir")
    b=$(median_ms "brig-build --runtime brig $name" "$BRIG_BUILD" --store "$STORE" build -q --no-cache \
        --network none --runtime "$BRIG" --build-arg FROM_CLI=cli -t "bench/$name:brig" "$dir")
    k=$(bk_ms "$name" -q --no-cache --network none --build-arg FROM_CLI=cli -t "bench/$name:bk" "$dir")
    c=$(median_ms "buildah $name" bh build -q --no-cache --pull-never --runtime "$RUNC" --network none \
        --build-arg FROM_CLI=cli -t "localhost/bench-$name:1" "$dir")
    printf '%-12s %12s %12s %10s %10s %14s %14s\n' "$name" "$a" "$b" "$k" "$c" "$(ratio "$a" "$k")" "$(ratio "$a" "$c")"
done
printf '\nratio < 1: brig-build (runc) is faster. Compare only numbers from one run.\n'

# ------------------------------------------------------------------ build cache
# A multi-stage Dockerfile with two independent stages and a final one that copies from both.
# Each tool keeps its cache between the builds of a row (brig-build: its store; BuildKit: its
# own; buildah: --layers). "cold" ignores the cache (brig-build and BuildKit --no-cache, buildah
# --no-cache --layers); "no change" rebuilds the same context; "one COPY changed" rewrites the
# source of the second stage's COPY before each build, so that stage's later steps and the final
# stage run again.
CACHE_CTX=$WORK/cache-ctx
mkdir -p "$CACHE_CTX"
cat >"$CACHE_CTX/Dockerfile" <<'DOCKERFILE'
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
DOCKERFILE
echo one >"$CACHE_CTX/one.txt"
echo two >"$CACHE_CTX/two.txt"
touch_two() { date +%s%N >"$CACHE_CTX/two.txt"; }
bb_cache() {
    "$BRIG_BUILD" --store "$STORE" build -q --network none --runtime "$RUNC" -t bench/cache:1 "$@" "$CACHE_CTX"
}
# brig-build as it ships: RUN under brig (its default runtime).
bbb_cache() {
    "$BRIG_BUILD" --store "$STORE" build -q --network none --runtime "$BRIG" -t bench/cache:1 "$@" "$CACHE_CTX"
}
bbb_changed() { touch_two && bbb_cache; }
bk_cache() { bk -q --network none -t bench/cache:1 "$@" "$CACHE_CTX"; }
bh_cache() {
    bh build -q --layers --pull-never --runtime "$RUNC" --network none -t localhost/bench-cache:1 "$@" "$CACHE_CTX"
}
bb_changed() { touch_two && bb_cache; }
bk_changed() { touch_two && bk_cache; }
bh_changed() { touch_two && bh_cache; }
# cache_row NAME BRIG_CMD BRIG_BRIG_CMD BUILDKIT_CMD BUILDAH_CMD [ARGS...]
cache_row() {
    local name=$1 a b k=- c
    a=$(median_ms "brig-build $name" "$2" "${@:6}")
    b=$(median_ms "brig-build (brig) $name" "$3" "${@:6}")
    [ -z "$BUILDKIT" ] || k=$(median_ms "BuildKit $name" "$4" "${@:6}")
    c=$(median_ms "buildah $name" "$5" "${@:6}")
    printf '%-18s %12s %12s %10s %10s %12s %12s %12s\n' "$name" "$a" "$b" "$k" "$c" \
        "$(ratio "$a" "$k")" "$(ratio "$b" "$k")" "$(ratio "$a" "$c")"
}

printf '\nbuild cache, multi-stage (two independent stages), median of %s, ms\n\n' "$RUNS"
printf '%-18s %12s %12s %10s %10s %12s %12s %12s\n' case "brig-build" "brig-build" BuildKit buildah \
    "ratio" "ratio" "ratio"
printf '%-18s %12s %12s %10s %10s %12s %12s %12s\n' "" "(runc)" "(brig)" "" "(runc)" "bb/BuildKit" \
    "bb(brig)/BK" "bb/buildah"
cache_row "cold" bb_cache bbb_cache bk_cache bh_cache --no-cache
bb_cache >/dev/null 2>&1
[ -z "$BUILDKIT" ] || bk_cache >/dev/null 2>&1
bh_cache >/dev/null 2>&1
cache_row "no change" bb_cache bbb_cache bk_cache bh_cache
cache_row "one COPY changed" bb_changed bbb_changed bk_changed bh_changed
printf '\nratio < 1: brig-build is faster. Compare only numbers from one run.\n'

# ------------------------------------------------------------------ scenarios
# Each: a cold build (--no-cache) and a rebuild with nothing changed, brig-build against BuildKit.
# large:  a context of LARGE_MB in LARGE_FILES files (random content, 40 per directory) COPY'd in.
# layers: 40 small steps, each its own layer (RUN and COPY alternating).
# debian: a debootstrap minbase (the conformance suite's, or made here) as FROM scratch + ADD,
#         then `apt-get install` of two packages from the Debian mirror (--network host: the
#         bench's dockerd has no bridge).
scenario_row() { # NAME CONTEXT [BUILD ARGS...]
    local name=$1 ctx=$2 a k=- a2 k2=-
    shift 2
    a=$(median_ms "brig-build $name cold" "$BRIG_BUILD" --store "$STORE" build -q --no-cache \
        --runtime "$RUNC" -t "bench/$name:1" "$@" "$ctx")
    a2=$(median_ms "brig-build $name no change" "$BRIG_BUILD" --store "$STORE" build -q \
        --runtime "$RUNC" -t "bench/$name:1" "$@" "$ctx")
    if [ -n "$BUILDKIT" ]; then
        k=$(median_ms "BuildKit $name cold" bk -q --no-cache -t "bench/$name:1" "$@" "$ctx")
        k2=$(median_ms "BuildKit $name no change" bk -q -t "bench/$name:1" "$@" "$ctx")
    fi
    printf '%-10s %12s %10s %8s %12s %10s %8s\n' "$name" "$a" "$k" "$(ratio "$a" "$k")" \
        "$a2" "$k2" "$(ratio "$a2" "$k2")"
}
make_large() {
    local ctx=$WORK/large n=$LARGE_FILES per
    per=$((LARGE_MB * 1024 * 1024 / LARGE_FILES))
    mkdir -p "$ctx/data"
    # One random source; each file a different slice of it, so no two files are alike.
    head -c $((LARGE_MB * 1024 * 1024 + per)) /dev/urandom >"$WORK/large.bin"
    python3 - "$WORK/large.bin" "$ctx/data" "$n" "$per" <<'PY'
import os, sys
src, out, n, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(src, 'rb') as f:
    data = f.read()
for i in range(n):
    d = os.path.join(out, '%04d' % (i // 40))
    if i % 40 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, '%d.bin' % i), 'wb') as g:
        g.write(data[i * per:(i + 1) * per])
PY
    rm -f "$WORK/large.bin"
    printf 'FROM localhost/busybox:base\nCOPY data /data\nRUN du -s /data\n' >"$ctx/Dockerfile"
}
make_layers() {
    local ctx=$WORK/layers i
    mkdir -p "$ctx"
    echo 'FROM localhost/busybox:base' >"$ctx/Dockerfile"
    for i in $(seq 1 20); do
        echo "file $i" >"$ctx/f$i.txt"
        printf 'COPY f%d.txt /layers/\nRUN echo %d >> /layers/log\n' "$i" "$i" >>"$ctx/Dockerfile"
    done
}
make_debian() {
    local ctx=$WORK/debian tarball=$REPO_DIR/conformance/work/images/debian-amd64.tar.xz
    [ -f "$tarball" ] || return 1
    mkdir -p "$ctx"
    cp "$tarball" "$ctx/rootfs.tar.xz"
    printf '%s\n' 'FROM scratch' 'ADD rootfs.tar.xz /' 'ENV DEBIAN_FRONTEND=noninteractive' \
        'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends jq less >/dev/null' \
        'CMD ["jq", "--version"]' >"$ctx/Dockerfile"
}
if [ -n "$SCENARIOS" ]; then
    printf '\nscenarios, brig-build (RUN under runc) vs BuildKit, median of %s, ms\n\n' "$RUNS"
    printf '%-10s %12s %10s %8s %12s %10s %8s\n' case "cold bb" "BuildKit" ratio "cached bb" "BuildKit" ratio
    for s in $SCENARIOS; do
        case $s in
        large) make_large && scenario_row large "$WORK/large" --network none ;;
        layers) make_layers && scenario_row layers "$WORK/layers" --network none ;;
        debian)
            if make_debian; then
                scenario_row debian "$WORK/debian" --network host
            else
                printf '%-10s  (no conformance/work/images/debian-amd64.tar.xz: make conformance makes it)\n' debian
            fi
            ;;
        *) printf 'bench/builder.sh: unknown scenario %s\n' "$s" >&2 ;;
        esac
    done
    printf '\nratio < 1: brig-build is faster. Compare only numbers from one run.\n'
fi
[ ! -e "$WORK/failed" ]
