#!/usr/bin/env bash
# Compiles Debian's reference policy (selinux-policy-default) into a kernel policy file for the
# SELinux guest, without installing anything on this host: the packages are unpacked into
# DIR and semodule builds the policy in a store below DIR (semodule -p DIR), with a
# semanage.conf that names the unpacked tools. Prints the policy file's path.
# (About 1 minute of wall time here; 2.2 MB of policy.)
# usage: tests/vm/selinux-policy.sh DIR
set -euo pipefail
dir=$1
root=$dir/root
mkdir -p "$dir/debs" "$root/etc/selinux"
(cd "$dir/debs" && apt-get download -qq selinux-policy-default policycoreutils selinux-utils 2>/dev/null)
for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
cat > "$root/etc/selinux/semanage.conf" <<CONF
module-store = direct
expand-check = 0
disable-genhomedircon = true
compiler-directory = $root/usr/libexec/selinux/hll
[setfiles]
path = $root/sbin/setfiles
args = -q -c \$@ \$<
[end]
[sefcontext_compile]
path = $root/usr/sbin/sefcontext_compile
args = -r \$@
[end]
CONF
mods=()
for m in $(cat "$root/usr/share/selinux/default/.modules"); do
  mods+=("-i$root/usr/share/selinux/default/$m.pp.bz2")
done
"$root/usr/sbin/semodule" -p "$root" -X 100 -n -s default "${mods[@]}" >"$dir/semodule.log" 2>&1 ||
  { cat "$dir/semodule.log" >&2; exit 1; }
ls "$root"/etc/selinux/default/policy/policy.* | tail -1
