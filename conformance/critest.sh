#!/usr/bin/env bash
# critest, Kubernetes' CRI validation suite (cri-tools v1.26.1 from
# ../shared/suites), through Debian's containerd 1.6 and its CRI plugin, once
# per runtime handler: `runc` (io.containerd.runc.v2), `brig`
# (containerd-shim-brig-v2) and `brig-runc-shim` (io.containerd.runc.v2 with
# BinaryName = brig). Prints a passed/failed/skipped table per handler and
# exits non-zero when a brig handler fails a spec that runc passes.
#
# Everything runs inside namespaces this script makes (mount, network, IPC,
# UTS, PID): a tmpfs over /run, an overlay over /var/lib, containerd with its
# own root/state/socket, the registry on 127.0.0.1 and the CNI bridge all live
# and die there. critest, crictl and the test images are built at test time
# into conformance/work/cri (critest and crictl are cached there). See
# README.md beside this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
cri="$here/work/cri"
suite_tar="${CRITEST_SUITE:-$top/../shared/suites/cri-tools-v1.26.1.tar.xz}"
suite_sha=1dbfd6184f4a24f9851f59a662c468a66b8afb62f1d8f1b5b2050b2c90d12cdb
port=5000 # the registry's, inside the network namespace of the run

# Specs that no runtime can pass on a host without internet, with the reason
# printed; never a spec only brig fails.
skips=(
	"public image with digest should be pulled and removed|pulls test-image-digest by a digest pinned in critest: an image on gcr.io that cannot be rebuilt byte for byte offline"
)

log() { printf 'critest: %s\n' "$*"; }
die() { printf 'critest: error: %s\n' "$*" >&2; exit 1; }

usage() {
	cat <<-EOF
		usage: $0 [--handlers "runc brig brig-runc-shim"] [--focus REGEX]
		       $0 --build-only        (builds critest and crictl into $cri/bin, no run)
		       CRI_INSIDE=SCRIPT $0   (runs SCRIPT in the environment instead of critest,
		                               with \$CRI_SOCK and \$CRICTL set)

		  --handlers LIST  runtime handlers to run, in order (default: all three; a brig
		                   handler is compared with runc only when runc runs too)
		  --focus REGEX    only the specs whose names match (ginkgo -focus)
		  brig is \$BRIG (default target/release/brig), the shim \$BRIG_SHIM
		  (default target/release/containerd-shim-brig-v2).
	EOF
}

# --- inside the namespaces -----------------------------------------------------

# Runs as PID 1 of a new PID namespace, in new mount, network, IPC and UTS
# namespaces; every process it leaves behind dies with it.
inner() {
	local run="$1" handlers="$2" focus="$3"
	local sock="$run/containerd.sock" results="$cri/results"

	mount --make-rshared /
	mount -t tmpfs -o mode=0755 tmpfs /run
	mkdir -p "$run/varlib/upper" "$run/varlib/work"
	mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$run/varlib/upper,workdir=$run/varlib/work" /var/lib
	ip link set lo up

	log "registry on 127.0.0.1:$port"
	cat >"$run/registry.yml" <<-EOF
		version: 0.1
		log: {level: warn}
		storage: {filesystem: {rootdirectory: $run/registry}, delete: {enabled: true}}
		http: {addr: "127.0.0.1:$port"}
	EOF
	docker-registry serve "$run/registry.yml" >"$run/registry.log" 2>&1 &
	local registry_pid=$!
	wait_for "registry" curl -fsS "http://127.0.0.1:$port/v2/"
	push_images "$run"

	containerd_config "$run"
	log "containerd (logs: $run/containerd.log)"
	PATH="$run/bin:$PATH" containerd --config "$run/containerd.toml" >"$run/containerd.log" 2>&1 &
	local containerd_pid=$!
	wait_for "containerd" "$cri/bin/crictl" --runtime-endpoint "unix://$sock" info

	if [ -n "${CRI_INSIDE:-}" ]; then
		# Another program in this environment instead of critest (bench/cri.sh).
		CRI_SOCK="$sock" CRICTL="$cri/bin/crictl" bash "$CRI_INSIDE" || echo "critest: $CRI_INSIDE failed" >&2
		handlers=""
	fi
	local h skip_re="" s
	for s in "${skips[@]}"; do skip_re+="${skip_re:+|}${s%%|*}"; done
	for h in $handlers; do
		log "== handler $h"
		local t0=$SECONDS args=(
			-runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock"
			-runtime-handler "$h" -ginkgo.json-report "$results/$h.json"
			-ginkgo.no-color -ginkgo.skip "$skip_re"
		)
		[ -n "$focus" ] && args+=(-ginkgo.focus "$focus")
		(cd "$run" && timeout 900 "$cri/bin/critest" "${args[@]}" >"$results/$h.log" 2>&1) || true
		echo "$((SECONDS - t0))" >"$results/$h.seconds"
		log "handler $h: $((SECONDS - t0)) s (log: $results/$h.log)"
		"$cri/bin/crictl" --runtime-endpoint "unix://$sock" rmp -fa >/dev/null 2>&1 || true
	done

	log "stopping containerd and the registry"
	"$cri/bin/crictl" --runtime-endpoint "unix://$sock" rmp -fa >/dev/null 2>&1 || true
	"$cri/bin/crictl" --runtime-endpoint "unix://$sock" rmi -a >/dev/null 2>&1 || true
	kill "$containerd_pid" "$registry_pid" 2>/dev/null || true
	wait "$containerd_pid" "$registry_pid" 2>/dev/null || true
	# Whatever is left (shims of a crashed run) dies with this PID namespace;
	# the mounts die with the mount namespace.
}

wait_for() {
	local what="$1" i
	shift
	for i in $(seq 1 100); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "$what did not come up"
}

# The test images, built with brig-build from contexts made here (Debian's
# busybox, ipcs from util-linux, pgrep from procps, small C programs for
# pause, nginx and nonewprivs) and pushed under the names critest pulls.
push_images() {
	local run="$1" ctx="$run/images" store="$run/build-store"
	local reg="127.0.0.1:$port" k8s="e2e-test-images" gcr="k8s-staging-cri-tools"
	make_contexts "$ctx"
	build() { # build DOCKERFILE-TEXT DEST... (first DEST names the image)
		local text="$1" name="$2" d
		shift
		printf '%s\n' "$text" >"$ctx/Dockerfile"
		"$BRIG_BUILD" build --store "$store" --progress plain -q -t "critest-$RANDOM" "$ctx" >"$run/iid" 2>"$run/build.log" ||
			{ cat "$run/build.log" >&2; die "brig-build failed for $name"; }
		for d in "$@"; do
			"$BRIG_BUILD" push --store "$store" --insecure-registry "$reg" "$(cat "$run/iid")" "$reg/$d" >>"$run/build.log" 2>&1 ||
				{ cat "$run/build.log" >&2; die "push of $d failed"; }
		done
	}
	log "building and pushing the test images"
	local t0=$SECONDS
	local base=$'FROM scratch\nCOPY rootfs /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	build "$base"$'\nCMD ["sh"]' "$k8s/busybox:1.29-2"
	build $'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]' "pause:3.6"
	local nginx=$'\nCOPY html /usr/share/nginx/html\nCOPY nginx /usr/sbin/nginx\nCMD ["/usr/sbin/nginx", "-g", "daemon off;"]'
	build "$base$nginx"$'\nEXPOSE 80' "$k8s/nginx:1.14-2"
	build "$base$nginx"$'\nENV NGINX_PORT=12003' "$gcr/hostnet-nginx-amd64:latest"
	build "$base"$'\nCOPY html /usr/local/apache2/htdocs\nCOPY httpd-foreground /usr/local/bin/\nEXPOSE 80\nCMD ["httpd-foreground"]' "$k8s/httpd:2.4.39-4"
	build "$base"$'\nCOPY nnp /usr/local/bin/nnp\nENTRYPOINT ["/usr/local/bin/nnp"]' "$k8s/nonewprivs:1.3"
	build "$base"$'\nCOPY predefined/ /etc/\nUSER 1000' "$gcr/test-image-predefined-group:latest"
	local u
	for u in "user-uid 1002" "user-username www-data" "user-uid-group 1003:1004" "user-username-group www-data:1004"; do
		build "$base"$'\nUSER '"${u#* }" "$gcr/test-image-${u%% *}:latest"
	done
	for u in test-image-1 test-image-2 test-image-3 test-image-latest test:test-image-tag all:test-image-tag; do
		local tag=latest repo="$u"
		[[ "$u" == *:* ]] && tag="${u%%:*}" repo="${u#*:}"
		build "$base"$'\nCOPY marker /'"$repo-$tag" "$gcr/$repo:$tag"
	done
	build "$base"$'\nCOPY marker /same-image' "$gcr/test-image-tags:1" "$gcr/test-image-tags:2" "$gcr/test-image-tags:3"
	log "images pushed in $((SECONDS - t0)) s"
}

make_contexts() {
	local ctx="$1" r="$1/rootfs" a
	mkdir -p "$r/bin" "$r/etc" "$r/root" "$r/tmp" "$r/var/www" "$r/var/run" "$r/usr/local/bin"
	chmod 1777 "$r/tmp"
	# Debian's busybox (not busybox-static, whose shell runs applets without
	# exec, so a masked /bin/ls would still run), as busybox images have it.
	cp "$busybox" "$r/bin/busybox"
	for a in $("$busybox" --list); do
		[ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
	done
	# The MaskedPaths spec masks /bin/ls: a symlink would mask busybox (sh)
	# too. busybox's images have hard links, which brig-build's COPY stores
	# as copies (258 of them would take half a minute to build and push);
	# one copy for ls does.
	rm "$r/bin/ls" && cp "$busybox" "$r/bin/ls"
	# busybox-static has neither ipcs (the IPC namespace specs run `ipcs -m`)
	# nor pgrep (the execSync timeout spec): util-linux's and procps', with
	# the libraries they link.
	local bin lib
	for bin in "$busybox" /usr/bin/ipcs /usr/bin/pgrep; do
		[ "$bin" = "$busybox" ] || { rm -f "$r/bin/${bin##*/}" && cp "$bin" "$r/bin/"; }
		for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
			mkdir -p "$r$(dirname "$lib")"
			cp -L "$lib" "$r$lib"
		done
	done
	cat >"$r/etc/passwd" <<-EOF
		root:x:0:0:root:/root:/bin/sh
		daemon:x:1:1:daemon:/usr/sbin:/bin/false
		www-data:x:33:33:www-data:/var/www:/bin/false
		nobody:x:65534:65534:nobody:/home:/bin/false
	EOF
	cat >"$r/etc/group" <<-EOF
		root:x:0:
		daemon:x:1:
		www-data:x:33:
		nogroup:x:65534:
	EOF
	mkdir -p "$ctx/predefined"
	{ cat "$r/etc/passwd"; echo "default-user:x:1000:1000::/home/default-user:/bin/sh"; } >"$ctx/predefined/passwd"
	{ cat "$r/etc/group"; echo "default-user:x:1000:"; echo "group-defined-in-image:x:50000:default-user"; } >"$ctx/predefined/group"
	mkdir -p "$ctx/html"
	echo '<html><body>critest stand-in web server</body></html>' >"$ctx/html/index.html"
	# The real httpd image logs its command line; critest looks for it.
	printf '#!/bin/sh\necho "httpd -D FOREGROUND"\nexec httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n' >"$ctx/httpd-foreground"
	chmod 755 "$ctx/httpd-foreground"
	: >"$ctx/marker"
	gcc -static -O2 -o "$ctx/pause" "$here/critest/pause.c"
	gcc -static -O2 -o "$ctx/nnp" "$here/critest/nnp.c"
	gcc -static -O2 -o "$ctx/nginx" "$here/critest/nginx.c"
	chmod 4755 "$ctx/nnp"
}

containerd_config() {
	local run="$1"
	mkdir -p "$run/bin" "$run/net.d" "$run/cni-data"
	ln -sf "$BRIG_SHIM" "$run/bin/containerd-shim-brig-v2"
	local h
	for h in registry.k8s.io gcr.io; do
		mkdir -p "$run/certs.d/$h"
		cat >"$run/certs.d/$h/hosts.toml" <<-EOF
			server = "https://$h"
			[host."http://127.0.0.1:$port"]
			  capabilities = ["pull", "resolve"]
		EOF
	done
	cat >"$run/net.d/10-critest.conflist" <<-EOF
		{"cniVersion": "1.0.0", "name": "critest", "plugins": [
		  {"type": "bridge", "bridge": "critest0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
		   "ipam": {"type": "host-local", "dataDir": "$run/cni-data",
		            "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
		  {"type": "portmap", "capabilities": {"portMappings": true}}
		]}
	EOF
	local cri_plugin='plugins."io.containerd.grpc.v1.cri"'
	cat >"$run/containerd.toml" <<-EOF
		version = 2
		root = "$run/root"
		state = "$run/state"
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
		[grpc]
		  address = "$run/containerd.sock"
		[ttrpc]
		  address = "$run/containerd.sock.ttrpc"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$run/opt"
		[$cri_plugin]
		  sandbox_image = "registry.k8s.io/pause:3.6"
		  # no CAP_SYS_RESOURCE here: sandboxes cannot get oom_score_adj -998
		  restrict_oom_score_adj = true
		  stream_server_address = "127.0.0.1"
		[$cri_plugin.cni]
		  bin_dir = "/usr/lib/cni"
		  conf_dir = "$run/net.d"
		[$cri_plugin.registry]
		  config_path = "$run/certs.d"
		[$cri_plugin.containerd]
		  default_runtime_name = "runc"
		  snapshotter = "overlayfs"
		[$cri_plugin.containerd.runtimes.runc]
		  runtime_type = "io.containerd.runc.v2"
		[$cri_plugin.containerd.runtimes.brig]
		  runtime_type = "io.containerd.brig.v2"
		[$cri_plugin.containerd.runtimes.brig-runc-shim]
		  runtime_type = "io.containerd.runc.v2"
		[$cri_plugin.containerd.runtimes.brig-runc-shim.options]
		  BinaryName = "$BRIG"
	EOF
}

if [ "${1:-}" = "__inner" ]; then
	shift
	inner "$@"
	exit 0
fi

# --- outside: build, run, report ------------------------------------------------

handlers="runc brig brig-runc-shim"
focus=""
build_only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--handlers) handlers="${2:?--handlers needs a value}"; shift 2 ;;
	--focus) focus="${2:?--focus needs a value}"; shift 2 ;;
	--build-only) build_only=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
for h in $handlers; do
	case "$h" in runc | brig | brig-runc-shim) ;; *) die "unknown handler $h (runc, brig, brig-runc-shim)" ;; esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"

export BRIG="${BRIG:-$top/target/release/brig}"
export BRIG_SHIM="${BRIG_SHIM:-$top/target/release/containerd-shim-brig-v2}"
export BRIG_BUILD="${BRIG_BUILD:-$top/target/release/brig-build}"
for b in "$BRIG" "$BRIG_SHIM" "$BRIG_BUILD"; do
	[ -n "$build_only" ] || [ -x "$b" ] || die "no executable $b (make build)"
done

t_start=$SECONDS
packages=(containerd docker-registry containernetworking-plugins golang-go
	util-linux procps iptables iproute2 gcc libc6-dev jq curl xz-utils)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
fi
# Debian's containerd package starts a host containerd; this script never
# talks to it, and never to /run/containerd (its own /run is a tmpfs).

# critest and crictl, built once per suite tarball (about 3 minutes).
mkdir -p "$cri/bin"
[ -f "$suite_tar" ] || die "no suite at $suite_tar (see ../shared/suites/README.md)"
if [ "$(cat "$cri/bin/.suite" 2>/dev/null)" != "$suite_sha" ]; then
	echo "$suite_sha  $suite_tar" | sha256sum -c --quiet - || die "$suite_tar: sha256 is not $suite_sha"
	log "building critest and crictl from $(basename "$suite_tar")"
	t0=$SECONDS
	rm -rf "$cri/src" && mkdir -p "$cri/src"
	tar -xJf "$suite_tar" -C "$cri/src"
	(cd "$cri/src"/cri-tools-* &&
		export GOFLAGS=-mod=vendor GOPROXY=off GOCACHE="$cri/gocache" &&
		go test -c -o "$cri/bin/critest" ./cmd/critest &&
		go build -o "$cri/bin/crictl" ./cmd/crictl) >"$cri/build.log" 2>&1 ||
		{ tail -30 "$cri/build.log" >&2; die "building critest failed (log: $cri/build.log)"; }
	echo "$suite_sha" >"$cri/bin/.suite"
	rm -rf "$cri/src" "$cri/gocache"
	log "built in $((SECONDS - t0)) s"
fi
[ -z "$build_only" ] || exit 0

# Debian's busybox package (the dynamically linked one), for the images.
export busybox="$cri/busybox/bin/busybox"
if [ ! -x "$busybox" ]; then
	rm -rf "$cri/busybox" "$cri/debs" && mkdir -p "$cri/debs"
	(cd "$cri/debs" && apt-get download -q busybox >/dev/null 2>&1) || die "apt-get download busybox failed"
	dpkg-deb -x "$cri"/debs/busybox_*.deb "$cri/busybox"
	rm -rf "$cri/debs"
fi

for s in "${skips[@]}"; do
	log "skipped for every handler: \"${s%%|*}\": ${s#*|}"
done

run=$(mktemp -d "$cri/run.XXXXXX")
rm -rf "$cri/results"
mkdir -p "$cri/results"
# containerd's CRI puts containers in cgroups /k8s.io/ID of the host's
# hierarchies; a run that ends early (containerd stopped with pods left)
# leaves them behind, empty once the PID namespace is gone. Those this run
# made are removed (rmdir: only empty ones go).
k8s_cgroups() { find /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io -depth -type d 2>/dev/null || true; }
cgroups_before=$(k8s_cgroups)
cleanup() {
	rm -rf "$run"
	local d
	for d in $(k8s_cgroups); do
		grep -qxF "$d" <<<"$cgroups_before" || rmdir "$d" 2>/dev/null || true
	done
}
trap cleanup EXIT
unshare --mount --net --ipc --uts --pid --fork --mount-proc --propagation private \
	bash "$here/critest.sh" __inner "$run" "$handlers" "$focus" || die "the run failed (see above)"
[ -z "${CRI_INSIDE:-}" ] || exit 0

# --- report ---------------------------------------------------------------------

# One line per spec: STATE<TAB>NAME, from ginkgo's JSON report.
specs() {
	jq -r '.[].SpecReports[]? | select(.LeafNodeType == "It")
		| [.State, ((.ContainerHierarchyTexts // []) + [.LeafNodeText] | join(" "))] | @tsv' "$1"
}
rc=0
printf '\n%-16s %7s %7s %8s %8s\n' handler passed failed skipped seconds
for h in $handlers; do
	f="$cri/results/$h.json"
	if [ ! -s "$f" ]; then
		printf '%-16s %7s %7s %8s %8s\n' "$h" - - - "$(cat "$cri/results/$h.seconds" 2>/dev/null || echo -)"
		echo "critest: no report for $h: last lines of its log:" >&2
		tail -20 "$cri/results/$h.log" >&2 || true
		rc=1
		continue
	fi
	specs "$f" >"$cri/results/$h.tsv"
	printf '%-16s %7s %7s %8s %8s\n' "$h" \
		"$(grep -c '^passed' "$cri/results/$h.tsv" || true)" \
		"$(grep -Ec '^(failed|panicked|timedout|interrupted|aborted)' "$cri/results/$h.tsv" || true)" \
		"$(grep -Ec '^(skipped|pending)' "$cri/results/$h.tsv" || true)" \
		"$(cat "$cri/results/$h.seconds")"
done
echo
for h in $handlers; do
	[ -s "$cri/results/$h.tsv" ] || continue
	bad=$(grep -Ev '^(passed|skipped|pending)' "$cri/results/$h.tsv" | cut -f2 || true)
	[ -n "$bad" ] && printf 'failed with %s:\n%s\n' "$h" "$(sed 's/^/  /' <<<"$bad")"
	[ "$h" = runc ] && continue
	[ -s "$cri/results/runc.tsv" ] || continue
	regress=$(while IFS=$'\t' read -r _ name; do
		grep -qxF "passed"$'\t'"$name" "$cri/results/runc.tsv" && echo "  $name"
	done < <(grep -Ev '^(passed|skipped|pending)' "$cri/results/$h.tsv") || true)
	if [ -n "$regress" ]; then
		printf 'FAIL: %s fails specs that runc passes:\n%s\n' "$h" "$regress"
		rc=1
	fi
done
log "total $((SECONDS - t_start)) s"
exit $rc
