#!/usr/bin/env bash
# Prepares the runc integration-suite yardstick (see README.md beside this
# file). Idempotent: installs only missing Debian packages, downloads runc's
# source package and builds the Debian rootfs once, and rebuilds the patched
# working copy of the suite under conformance/work/suite on every run (cheap).
#
# Needs root and Debian's package mirrors; nothing else from outside.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work="$here/work"
suite="$work/suite"
images="$work/images"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$work" "$images"

# --- apt: deb-src and packages -------------------------------------------------

apt_updated=
apt_update() {
	[ -n "$apt_updated" ] && return
	log "apt-get update"
	apt-get update -q >"$work/apt-update.log" 2>&1 || {
		cat "$work/apt-update.log" >&2
		die "apt-get update failed"
	}
	apt_updated=1
}

# Debian ships deb822 sources with "Types: deb" only; `apt-get source` needs a
# deb-src entry. Add one beside it (same URIs, suites and keys) if missing.
src_list=/etc/apt/sources.list.d/brig-conformance-src.sources
have_deb_src() {
	grep -qsE '^(Types:.*\<deb-src\>|deb-src[[:space:]])' /etc/apt/sources.list \
		/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}
if ! have_deb_src; then
	[ -f /etc/apt/sources.list.d/debian.sources ] ||
		die "no deb-src entry and no /etc/apt/sources.list.d/debian.sources to copy one from"
	log "adding $src_list"
	sed '/^Types:/s/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src_list"
	apt_update
fi

packages=(
	# the runtimes compared
	runc crun
	# the suite and its tools
	bats busybox-static jq iproute2 util-linux gawk gcc libc6-dev
	python3 python3-jsonschema xz-utils tar coreutils procps
	# rootfs for hooks.bats and apt-get source
	debootstrap dpkg-dev
	# Go helpers (recvtty, sd-helper, seccompagent), GOPATH mode against
	# Debian's packaged libraries; get-images.sh also runs `go env GOARCH`
	golang-go pkg-config libseccomp-dev
	golang-dbus-dev
	golang-github-checkpoint-restore-go-criu-dev
	golang-github-cilium-ebpf-dev
	golang-github-containerd-console-dev
	golang-github-coreos-go-systemd-dev
	golang-github-cyphar-filepath-securejoin-dev
	golang-github-docker-go-units-dev
	golang-github-moby-sys-dev
	golang-github-mrunalp-fileutils-dev
	golang-github-opencontainers-selinux-dev
	golang-github-opencontainers-specs-dev
	golang-github-seccomp-libseccomp-golang-dev
	golang-github-sirupsen-logrus-dev
	golang-github-urfave-cli-dev
	golang-github-vishvananda-netlink-dev
	golang-gocapability-dev
	golang-golang-x-net-dev
	golang-golang-x-sys-dev
	golang-google-protobuf-dev
)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt_update
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
		>"$work/apt-install.log" 2>&1 || {
		tail -n 30 "$work/apt-install.log" >&2
		die "apt-get install failed"
	}
fi

# --- runc's source package (downloaded once) -----------------------------------

find_src() { find "$work" -maxdepth 1 -type d -name 'runc-1.*' | sort | tail -n 1; }
src=$(find_src)
if [ -z "$src" ] || [ ! -f "$src/tests/integration/helpers.bash" ]; then
	# The Sources index exists only after an apt-get update with deb-src.
	apt-cache showsrc runc 2>/dev/null | grep -q '^Package: runc' || apt_update
	log "apt-get source runc"
	# apt drops to user _apt for downloads when it can write the directory.
	(cd "$work" && apt-get source -q runc >"$work/apt-source.log" 2>&1) || {
		tail -n 20 "$work/apt-source.log" >&2
		die "apt-get source runc failed"
	}
	src=$(find_src)
fi
[ -f "$src/tests/integration/helpers.bash" ] || die "no runc source in $work"
log "runc source: $src"

# --- images ----------------------------------------------------------------------

arch=$(go env GOARCH)

# Busybox rootfs in the docker-library layout the suite was written against:
# every applet in /bin, passwd/group/shadow of the glibc variant, no /proc and
# no /sys (mask.bats symlinks onto them), top directory 0755.
build_busybox() {
	local out="$1" tmp
	tmp=$(mktemp -d "$work/busybox.XXXXXX")
	local r="$tmp/rootfs"
	mkdir -p "$r"/{bin,dev,etc,home,root,tmp,var/spool/mail,var/www,usr/sbin}
	chmod 0755 "$r" "$r"/{bin,dev,etc,home,var}
	chmod 0700 "$r/root"
	chmod 1777 "$r/tmp"
	cp /bin/busybox "$r/bin/busybox"
	local applet
	for applet in $("$r/bin/busybox" --list); do
		[ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
	done
	cat >"$r/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		daemon:x:1:1:daemon:/usr/sbin:/bin/false
		bin:x:2:2:bin:/bin:/bin/false
		sys:x:3:3:sys:/dev:/bin/false
		sync:x:4:100:sync:/bin:/bin/sync
		mail:x:8:8:mail:/var/spool/mail:/bin/false
		www-data:x:33:33:www-data:/var/www:/bin/false
		operator:x:37:37:Operator:/var:/bin/false
		nobody:x:65534:65534:nobody:/home:/bin/false
	EOF
	cat >"$r/etc/group" <<-'EOF'
		root:x:0:
		daemon:x:1:
		bin:x:2:
		sys:x:3:
		adm:x:4:
		tty:x:5:
		disk:x:6:
		lp:x:7:
		mail:x:8:
		kmem:x:9:
		wheel:x:10:root
		cdrom:x:11:
		dialout:x:18:
		floppy:x:19:
		video:x:28:
		audio:x:29:
		tape:x:32:
		www-data:x:33:
		operator:x:37:
		utmp:x:43:
		plugdev:x:46:
		staff:x:50:
		lock:x:54:
		netdev:x:82:
		users:x:100:
		nogroup:x:65534:
	EOF
	cat >"$r/etc/shadow" <<-'EOF'
		root:*:10933:0:99999:7:::
		daemon:*:10933:0:99999:7:::
		bin:*:10933:0:99999:7:::
		sys:*:10933:0:99999:7:::
		sync:*:10933:0:99999:7:::
		mail:*:10933:0:99999:7:::
		www-data:*:10933:0:99999:7:::
		operator:*:10933:0:99999:7:::
		nobody:*:10933:0:99999:7:::
	EOF
	chmod 0644 "$r/etc/passwd" "$r/etc/group"
	chmod 0640 "$r/etc/shadow"
	tar --numeric-owner --owner=0 --group=0 -C "$r" -cf - . | xz -T0 >"$tmp/out.tar.xz"
	mv "$tmp/out.tar.xz" "$out"
	rm -rf "$tmp"
}

busybox_img="$images/busybox-$arch.tar.xz"
if [ ! -s "$busybox_img" ] || [ /bin/busybox -nt "$busybox_img" ]; then
	log "building $busybox_img from /bin/busybox"
	build_busybox "$busybox_img"
fi

# Debian rootfs for hooks.bats (needs ldconfig): debootstrap minbase from the
# configured Debian mirror, trimmed, built once.
debian_img="$images/debian-$arch.tar.xz"
if [ ! -s "$debian_img" ]; then
	mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	: "${mirror:=http://deb.debian.org/debian}"
	# shellcheck source=/dev/null
	suite_name=$(. /etc/os-release && echo "$VERSION_CODENAME")
	tmp=$(mktemp -d "$work/debian.XXXXXX")
	log "debootstrap --variant=minbase $suite_name from $mirror"
	if ! debootstrap --variant=minbase --arch="$arch" "$suite_name" "$tmp/rootfs" "$mirror" \
		>"$work/debootstrap.log" 2>&1; then
		tail -n 20 "$work/debootstrap.log" >&2
		rm -rf "$tmp"
		die "debootstrap failed (see $work/debootstrap.log)"
	fi
	(cd "$tmp/rootfs" && rm -rf usr/share/doc/* usr/share/man/* usr/share/locale/* \
		usr/share/info/* var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/*)
	tar --numeric-owner -C "$tmp/rootfs" -cf - . | xz -T0 >"$tmp/out.tar.xz"
	mv "$tmp/out.tar.xz" "$debian_img"
	rm -rf "$tmp"
fi

# --- the working copy of the suite -------------------------------------------------

log "preparing $suite"
rm -rf "$suite"
mkdir -p "$suite"
cp -a "$src/." "$suite/"
rm -rf "$suite/debian" "$suite/.pc"
it="$suite/tests/integration"

# Images: get-images.sh skips its download for files already in testdata/.
cp "$busybox_img" "$debian_img" "$it/testdata/"

# Go helpers, GOPATH mode (no module proxy here).
gopath="$work/gopath"
mkdir -p "$gopath/src/github.com/opencontainers"
ln -sfn "$suite" "$gopath/src/github.com/opencontainers/runc"
for cmd in recvtty sd-helper seccompagent; do
	(cd "$gopath/src/github.com/opencontainers/runc" &&
		GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
			go build -tags seccomp -o "contrib/cmd/$cmd/$cmd" "./contrib/cmd/$cmd") ||
		die "building $cmd failed"
done

# spec.bats: the validator clones runtime-spec from the internet; validate
# against Debian's packaged runtime-spec schema with python3-jsonschema.
schema=/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema/config-schema.json
[ -f "$schema" ] || die "missing $schema (golang-github-opencontainers-specs-dev)"
validator=$(printf '\t%s\n' \
	"# brig conformance: validate against Debian's packaged runtime-spec schema" \
	"# with python3-jsonschema (no internet to clone runtime-spec from)." \
	"SCHEMA=$schema" \
	"[ -e \"\$SCHEMA\" ]" \
	"/usr/bin/python3 $here/validate_spec.py \"\$SCHEMA\" config.json")
awk -v repl="$validator" '
	/^\tSPEC_VERSION=\$\(awk/ { skipping = 1; print repl; next }
	skipping && /^\t\.\/validate "\$SCHEMA" config\.json$/ { skipping = 0; next }
	!skipping { print }' "$it/spec.bats" >"$it/spec.bats.new"
mv "$it/spec.bats.new" "$it/spec.bats"
grep -q validate_spec.py "$it/spec.bats" || die "patching spec.bats failed"

# helpers.bash: criu is installed but `criu check` fails on some kernels
# (6.18: vdso symtable); treat a criu that fails its own check as absent so
# checkpoint.bats skips rather than fails for every runtime.
sed -i 's/^\tcommand -v criu &>\/dev\/null || return 1$/&\n\tcriu check \&>\/dev\/null || return 1/' "$it/helpers.bash"
grep -q 'criu check' "$it/helpers.bash" || die "patching helpers.bash failed"

# checkpoint.bats: the lazy-pages test gives criu 2 s to say its page server is ready. In the
# emulated guest (TCG, 10-30x slower) criu's dump alone takes longer, so that wait measures the
# emulation, not the runtime: 30 s there, for every runtime alike.
sed -i 's/out=$(timeout 2 dd if=/out=$(timeout 30 dd if=/' "$it/checkpoint.bats"
grep -q 'timeout 30 dd if=' "$it/checkpoint.bats" || die "patching checkpoint.bats failed"

# crun wrapper: crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode
# not supported"). Run it in a private mount namespace where the cgroup2 mount
# at /sys/fs/cgroup/unified is gone, so it sees plain cgroup v1. unshare -m
# makes every mount private there: the host's mounts are untouched.
crun_bin=$(command -v crun)
mkdir -p "$work/wrappers"
rm -f "$work/crun-wrapper"
cat >"$work/wrappers/crun" <<EOF
#!/bin/sh
# Generated by conformance/setup.sh: run $crun_bin with the host's cgroup2
# mount (hybrid mode) hidden, in a private mount namespace.
exec unshare -m --propagation private sh -c '
	if [ "\$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
		umount -l /sys/fs/cgroup/unified || exit 125
	fi
	exec $crun_bin "\$@"' crun "\$@"
EOF
chmod 0755 "$work/wrappers/crun"

touch "$suite/.ready"
bats_files=("$it"/*.bats)
log "ready: $(cat "${bats_files[@]}" | grep -c '^@test') tests in ${#bats_files[@]} files"
