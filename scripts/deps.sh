#!/usr/bin/env bash
# Installs what building and testing brig needs, only what is missing.
# Needs no network but the Debian mirrors and crates.io.
set -euo pipefail
need=()
# (golang-go and the image-spec schema: e2e builds conformance/image-spec/validate.go, before
# `make conformance` would install them.)
for p in build-essential pkg-config libseccomp-dev busybox-static runc crun hyperfine time jq iproute2 util-linux \
         skopeo umoci podman containerd docker-registry apache2-utils buildah \
         qemu-system-x86 linux-image-amd64 cpio docker.io debootstrap xz-utils bzip2 zstd openssl ca-certificates uidmap libcap2-bin \
         fuse-overlayfs golang-go golang-github-opencontainers-image-spec-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null || { echo "deps: cargo (Rust toolchain) is required" >&2; exit 1; }
