#!/usr/bin/env bash
# The image-spec's own validators on what brig-build writes, side by side with
# buildah: every Dockerfile of tests/testdata/dockerfiles is built by both
# (brig-build also once with --compression zstd) into an OCI layout directory,
# and image-spec/validate.go checks it with github.com/opencontainers/image-spec/
# schema (Debian's golang-github-opencontainers-image-spec-dev): oci-layout,
# index, manifests and configs against the spec's schemas and checks, blobs
# against their descriptors, layers against the config's diff_ids.
#
#   conformance/image-spec.sh          (as root)
#
# env: BRIG_BUILD (default target/release/brig-build), RUNC (RUN steps of
# both builders; default /usr/sbin/runc: buildah's default crun refuses this
# hybrid cgroup host).
# Prints one table; exits 1 if any brig-build output fails validation.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
BRIG_BUILD=${BRIG_BUILD:-$top/target/release/brig-build}
RUNC=${RUNC:-/usr/sbin/runc}
work=$here/work/image-spec

die() { printf 'image-spec.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (RUN steps start containers)"
[ -x "$BRIG_BUILD" ] || die "no brig-build at $BRIG_BUILD (make build)"

missing=()
for p in golang-go golang-github-opencontainers-image-spec-dev buildah runc busybox-static zstd; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

rm -rf "$work"
mkdir -p "$work/bin"
# Debian's Go libraries live in a GOPATH tree: no module download.
(cd "$here/image-spec" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$work/gocache" \
    go build -o "$work/bin/validate" validate.go) || die "building image-spec/validate.go failed"

store=$work/store
bh() { buildah --root "$work/bh-root" --runroot "$work/bh-run" --storage-driver vfs "$@"; }
cleanup() { bh rmi -a -f >/dev/null 2>&1 || true; }
trap cleanup EXIT

# The base every test Dockerfile starts from: busybox, built by brig-build,
# imported into buildah's store.
base=$work/base
mkdir -p "$base/rootfs"/{bin,etc,proc,sys,dev,root,tmp}
chmod 1777 "$base/rootfs/tmp"
cp /bin/busybox "$base/rootfs/bin/busybox"
for a in $("$base/rootfs/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$base/rootfs/bin/$a"
done
# The users and groups the test Dockerfiles name (as bench/builder.sh's base).
printf '%s\n' root:x:0:0:root:/root:/bin/sh daemon:x:1:1:daemon:/usr/sbin:/bin/false \
    'brig:x:1000:1000:brig test user:/tmp:/bin/sh' nobody:x:65534:65534:nobody:/nonexistent:/bin/false \
    >"$base/rootfs/etc/passwd"
printf '%s\n' root:x:0: daemon:x:1: brig:x:1000: nogroup:x:65534: >"$base/rootfs/etc/group"
echo brig-conformance >"$base/rootfs/etc/hostname"
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n' >"$base/Dockerfile"
"$BRIG_BUILD" --store "$store" build -q -t localhost/busybox:base \
    -o "type=oci,dest=$work/base-oci,name=localhost/busybox:base" "$base" >/dev/null ||
    die "brig-build could not build the base image"
id=$(bh pull -q "oci:$work/base-oci:base") || die "buildah could not import the base image"
bh tag "$id" localhost/busybox:base >/dev/null

# check NAME DIR: validates DIR, prints pass/total of its checks, keeps the log.
check() {
    local log=$work/$1.log
    "$work/bin/validate" "$2" >"$log" 2>&1 || true
    printf '%s/%s' "$(grep -c '^ok ' "$log")" "$(grep -c -E '^(ok|FAIL) ' "$log")"
}

fail=0
rows=()
failed_builds=()
for dir in "$top"/tests/testdata/dockerfiles/*/; do
    name=$(basename "$dir")
    b=$work/brig-$name z=$work/brig-zstd-$name h=$work/buildah-$name
    if "$BRIG_BUILD" --store "$store" build -q --runtime "$RUNC" --build-arg FROM_CLI=cli \
        -o "type=oci,dest=$b,name=t:1" "$dir" >"$work/brig-$name.build.log" 2>&1; then
        rb=$(check "brig-$name" "$b")
    else
        rb="build failed"
    fi
    if "$BRIG_BUILD" --store "$store" build -q --runtime "$RUNC" --build-arg FROM_CLI=cli \
        --compression zstd -o "type=oci,dest=$z,name=t:1" "$dir" >"$work/brig-zstd-$name.build.log" 2>&1; then
        rz=$(check "brig-zstd-$name" "$z")
    else
        rz="build failed"
    fi
    if bh build -q --pull-never --runtime "$RUNC" --build-arg FROM_CLI=cli -t "is-$name" "$dir" \
        >"$work/buildah-$name.build.log" 2>&1 &&
        bh push -q "is-$name" "oci:$h:1" >>"$work/buildah-$name.build.log" 2>&1; then
        rh=$(check "buildah-$name" "$h")
    else
        rh="build failed"
    fi
    for r in "brig-$name:$rb" "brig-zstd-$name:$rz"; do
        case ${r#*:} in
            "build failed") fail=1; failed_builds+=("${r%%:*}") ;;
            *) ;;
        esac
    done
    for r in "$rb" "$rz"; do
        case $r in */*) [ "${r%/*}" = "${r#*/}" ] || fail=1 ;; esac
    done
    rows+=("$(printf '%-12s %-16s %-16s %-16s' "$name" "$rb" "$rz" "$rh")")
done

# Attestations (--sbom, --provenance=mode=max): an index of the image and its attestation
# manifest, as BuildKit writes it.
a=$work/brig-attested
if "$BRIG_BUILD" --store "$store" build -q --runtime "$RUNC" --build-arg FROM_CLI=cli \
    --sbom --provenance=mode=max -o "type=oci,dest=$a,name=t:1" "$top/tests/testdata/dockerfiles/single" \
    >"$work/brig-attested.build.log" 2>&1; then
    ra=$(check brig-attested "$a")
    [ "${ra%/*}" = "${ra#*/}" ] || fail=1
else
    ra="build failed"
    fail=1
    failed_builds+=(brig-attested)
fi
rows+=("$(printf '%-12s %-16s %-16s %-16s' "single+att" "$ra" "-" "-")")

printf '\nimage-spec validation (image-spec %s schema package; checks passed/run per image)\n' \
    "$(dpkg-query -W -f '${Version}' golang-github-opencontainers-image-spec-dev)"
printf '%-12s %-16s %-16s %-16s\n' dockerfile brig-build "brig-build zstd" buildah
printf '%s\n' "${rows[@]}"
if [ "$fail" = 1 ]; then
    printf '\nbrig-build output failed validation; the logs:\n'
    grep -H '^FAIL' "$work"/brig-*.log 2>/dev/null || true
    for b in "${failed_builds[@]}"; do
        echo "== $b: the build failed"
        tail -5 "$work/$b.build.log"
    done
    exit 1
fi
printf 'every brig-build output passes\n'
