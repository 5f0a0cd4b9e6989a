#!/usr/bin/env bash
# The runc yardstick: runc's own integration suite (tests/integration/*.bats of
# Debian's runc source package) run with RUNC set to each runtime in turn,
# one table of pass/fail/skip per file. Exits non-zero when brig passes fewer
# tests than conformance/record.txt says. See README.md beside this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
work="$here/work"
suite="$work/suite"
it="$suite/tests/integration"
results="$work/results"
record_file="$here/record.txt"

usage() {
	cat <<-EOF
		usage: $0 [--runtimes "brig runc crun"] [--files "a.bats b.bats"] [--timeout SECS] [--budget SECS] [--raise-record]

		  --runtimes LIST  runtimes to run, in order (default: "brig runc crun"). brig is
		                   \$BRIG, else $top/target/release/brig, else target/debug/brig;
		                   crun runs through a wrapper that hides the hybrid cgroup2 mount;
		                   any other name is looked up in PATH.
		  --files LIST     .bats files to run (default: all in the suite)
		  --timeout SECS   limit for one .bats file (default: \$CONFORMANCE_FILE_TIMEOUT or 120)
		  --budget SECS    limit for one runtime's whole run; files not started within it
		                   count as failed (default: \$CONFORMANCE_RUNTIME_BUDGET or 1500)
		  --raise-record   write brig's pass count to record.txt if it beats the record
	EOF
}

runtimes="brig runc crun"
files=""
file_timeout="${CONFORMANCE_FILE_TIMEOUT:-120}"
budget="${CONFORMANCE_RUNTIME_BUDGET:-1500}"
raise_record=
while [ $# -gt 0 ]; do
	case "$1" in
	--runtimes) runtimes="${2:?--runtimes needs a value}"; shift 2 ;;
	--runtimes=*) runtimes="${1#*=}"; shift ;;
	--files) files="${2:?--files needs a value}"; shift 2 ;;
	--files=*) files="${1#*=}"; shift ;;
	--timeout) file_timeout="${2:?--timeout needs a value}"; shift 2 ;;
	--timeout=*) file_timeout="${1#*=}"; shift ;;
	--budget) budget="${2:?--budget needs a value}"; shift 2 ;;
	--budget=*) budget="${1#*=}"; shift ;;
	--raise-record) raise_record=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ "$file_timeout" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --timeout must be a number of seconds" >&2; exit 2; }
[[ "$budget" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --budget must be a number of seconds" >&2; exit 2; }
if [ -n "$raise_record" ] && [ -n "$files" ]; then
	echo "run.sh: --raise-record needs the whole suite (no --files)" >&2
	exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "run.sh: must run as root" >&2; exit 2; }

# The working copy is (re)built by setup.sh; do that when it is missing or
# older than setup.sh.
if [ ! -f "$suite/.ready" ] || [ "$here/setup.sh" -nt "$suite/.ready" ]; then
	"$here/setup.sh"
fi

if [ -z "$files" ]; then
	files=$(cd "$it" && ls -- *.bats)
fi
file_list=()
for f in $files; do
	f="${f##*/}"
	[[ "$f" == *.bats ]] || f="$f.bats"
	[ -f "$it/$f" ] || { echo "run.sh: no such file in the suite: $f" >&2; exit 2; }
	[[ " ${file_list[*]} " == *" $f "* ]] || file_list+=("$f")
done

# Absolute path of a runtime's binary on stdout, or a reason on stderr.
resolve_runtime() {
	local name="$1" p
	case "$name" in
	brig)
		if [ -n "${BRIG:-}" ]; then
			p="$BRIG"
		elif [ -x "$top/target/release/brig" ]; then
			p="$top/target/release/brig"
		else
			p="$top/target/debug/brig"
		fi
		[ -x "$p" ] || { echo "no brig binary at $p (build it or set BRIG)" >&2; return 1; }
		;;
	crun)
		command -v crun >/dev/null || { echo "crun is not installed" >&2; return 1; }
		p="$work/wrappers/crun"
		;;
	*)
		p=$(command -v "$name") || { echo "$name not found in PATH" >&2; return 1; }
		;;
	esac
	readlink -f "$p"
}

# Cleaning up after one file. A file that times out (or a runtime that
# fails its teardown) leaves containers, processes, mounts and cgroups behind
# that would break the files after it. They are found only through handles
# that belong to this run, since other work may share the host: the state
# roots under the file's own TMPDIR, a marker in the environment of every
# process bats starts, and cgroups created while the file ran that carry the
# suite's names (container ids from those state roots, the suite's ids
# test* and ctN, its cgroupsPath parent, and controllers helpers.bash creates on the
# /sys/fs/cgroup tmpfs with `mkdir -p` although they are not mounted here).
cgroup_dirs() {
	find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2>/dev/null | sort
}

# New cgroup directories (deepest first) that the suite may have made.
suite_cgroups() {
	local before="$1" d base top_dir
	shift
	while IFS= read -r d; do
		base="${d##*/}"
		top_dir="/sys/fs/cgroup/$(cut -d/ -f5 <<<"$d")"
		if [[ "$d" == */runc-cgroups-integration-test* || "$base" == test* || "$base" =~ ^ct[0-9]+$ ]] ||
			! grep -qxF "$top_dir" "$before"; then
			echo "$d"
			continue
		fi
		local id
		for id in "$@"; do
			[ "$base" = "$id" ] && echo "$d" && break
		done
	done < <(comm -13 "$before" <(cgroup_dirs) | sort -r)
}

kill_marked() {
	local token="$1" e pid n=0
	for _ in 1 2 3; do
		local found=0
		for e in /proc/[0-9]*/environ; do
			pid="${e#/proc/}"
			pid="${pid%/environ}"
			if grep -qzxF "BRIG_CONFORMANCE_TOKEN=$token" "$e" 2>/dev/null; then
				kill -9 "$pid" 2>/dev/null && found=$((found + 1))
			fi
		done
		n=$((n + found))
		[ "$found" -eq 0 ] && break
		sleep 0.5
	done
	echo "$n"
}

cleanup_file() {
	local tmp="$1" token="$2" runtime="$3" before="$4"
	local notes=() ids=() root dir id pid n=0 d

	# Containers the runtime still knows about: delete them with it, and kill
	# their init if it cannot.
	while IFS= read -r root; do
		for dir in "$root"/*/; do
			[ -d "$dir" ] || continue
			id=$(basename "$dir")
			ids+=("$id")
			timeout 20 "$runtime" --root "$root" delete -f "$id" >/dev/null 2>&1 || true
			[ -e "$dir" ] || continue
			pid=$(timeout 10 "$runtime" --root "$root" state "$id" 2>/dev/null | jq -r '.pid // empty' 2>/dev/null || true)
			if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$pid" -gt 1 ] && kill -9 "$pid" 2>/dev/null; then
				n=$((n + 1))
			fi
		done
	done < <(find "$tmp" -maxdepth 4 -type d -name state 2>/dev/null)
	[ "${#ids[@]}" -eq 0 ] || notes+=("${#ids[@]} containers left: ${ids[*]}")

	# Processes bats started: runtimes still running, recvtty, seccompagent.
	local marked
	marked=$(kill_marked "$token")
	n=$((n + marked))

	# Container processes in the suite's new cgroups (thawed first: frozen
	# processes do not die).
	local cgs
	cgs=$(suite_cgroups "$before" "${ids[@]}")
	while IFS= read -r d; do
		[ -n "$d" ] || continue
		[ -f "$d/freezer.state" ] && echo THAWED >"$d/freezer.state" 2>/dev/null
		[ -f "$d/cgroup.procs" ] || continue
		while IFS= read -r pid; do
			kill -9 "$pid" 2>/dev/null && n=$((n + 1))
		done <"$d/cgroup.procs"
	done <<<"$cgs"
	[ "$n" -eq 0 ] || notes+=("killed $n leftover processes")

	# Mounts under the file's TMPDIR, then the directory itself.
	local mnt
	while IFS= read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done < <(awk -v t="$tmp/" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r)
	rm -rf "$tmp" 2>/dev/null || notes+=("could not remove $tmp")

	# Empty cgroup directories (rmdir leaves cgroups still in use).
	local left=()
	sleep 0.2
	while IFS= read -r d; do
		[ -n "$d" ] || continue
		rmdir "$d" 2>/dev/null || left+=("$d")
	done < <(suite_cgroups "$before" "${ids[@]}")
	[ "${#left[@]}" -eq 0 ] || notes+=("cgroups left behind: ${left[*]}")

	local IFS=';'
	echo "${notes[*]}"
}

# crun (and maybe others) chown the stdio files when they are not a tty; with
# stdin from /dev/null that is the host's /dev/null.
check_devnull() {
	local now
	now=$(stat -c '%u:%g %a' /dev/null)
	if [ "$now" != "0:0 666" ]; then
		chown 0:0 /dev/null
		chmod 0666 /dev/null
		echo "restored /dev/null (was $now)"
	fi
}

# Count a TAP log: prints "pass fail skip note".
count_tap() {
	local log="$1" bats_file="$2" rc="$3" plan ok notok skip note=""
	plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$log" | cut -d. -f3 || true)
	ok=$(grep -cE '^ok [0-9]+' "$log" || true)
	skip=$(grep -cE '^ok [0-9]+ .*# skip' "$log" || true)
	notok=$(grep -cE '^not ok [0-9]+' "$log" || true)
	if [ -z "$plan" ]; then
		plan=$(grep -cE '^@test ' "$bats_file" || true)
		note="no TAP plan"
	fi
	local missing=$((plan - ok - notok))
	if [ "$missing" -gt 0 ]; then
		notok=$((notok + missing))
		note="${note:+$note; }$missing not reported"
	fi
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		note="${note:+$note; }timed out"
	fi
	echo "$((ok - skip)) $notok $skip ${note:-}"
}

declare -A cell total_pass total_fail total_skip seconds status
for rt in $runtimes; do
	out="$results/$rt"
	rm -rf "$out"
	mkdir -p "$out"
	if ! path=$(resolve_runtime "$rt" 2>"$out/not-run.txt"); then
		status[$rt]="not run: $(cat "$out/not-run.txt")"
		echo "== $rt: ${status[$rt]}"
		continue
	fi
	rm -f "$out/not-run.txt"
	"$path" --version >"$out/version.txt" 2>&1 || true
	echo "== $rt: RUNC=$path ($(head -n 1 "$out/version.txt"))"
	printf 'file\tpass\tfail\tskip\tseconds\tnote\n' >"$out/summary.tsv"
	total_pass[$rt]=0 total_fail[$rt]=0 total_skip[$rt]=0
	rt_start=$(date +%s)
	for f in "${file_list[@]}"; do
		# Keep a runtime that hangs everywhere within its budget.
		remaining=$((budget - ($(date +%s) - rt_start)))
		if [ "$remaining" -lt 10 ]; then
			fl=$(grep -cE '^@test ' "$it/$f" || true)
			note="not run: budget of ${budget}s used up"
			printf '%s\t0\t%s\t0\t0\t%s\n' "$f" "$fl" "$note" >>"$out/summary.tsv"
			cell[$rt,$f]="0/$fl/0 !"
			total_fail[$rt]=$((total_fail[$rt] + fl))
			printf '   %-28s %3s pass %3s fail %3s skip %4ss  (%s)\n' "$f" 0 "$fl" 0 0 "$note"
			continue
		fi
		limit=$((remaining < file_timeout ? remaining : file_timeout))
		before=$(mktemp)
		cgroup_dirs >"$before"
		tmp=$(mktemp -d /tmp/brig-conformance.XXXXXX)
		chmod 0755 "$tmp"
		token="$rt-${f%.bats}-${tmp##*.}"
		log="$out/${f%.bats}.tap"
		start=$(date +%s)
		rc=0
		# bats needs a terminal for several tests: script gives it a pty.
		# No BATS_TEST_TIMEOUT: its watchdog breaks events.bats' `wait`.
		(cd "$it" && RUNC="$path" TMPDIR="$tmp" BRIG_CONFORMANCE_TOKEN="$token" \
			timeout -k 30 "$limit" \
			script -qec "bats --no-tempdir-cleanup -t $f" /dev/null </dev/null) 2>&1 |
			tr -d '\r' >"$log" || rc=$?
		secs=$(($(date +%s) - start))
		read -r p fl s note < <(count_tap "$log" "$it/$f" "$rc")
		extra=$(cleanup_file "$tmp" "$token" "$path" "$before")
		devnull=$(check_devnull)
		rm -f "$before"
		for x in "$extra" "$devnull"; do
			[ -z "$x" ] || note="${note:+$note; }${x//;/; }"
		done
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$p" "$fl" "$s" "$secs" "$note" >>"$out/summary.tsv"
		cell[$rt,$f]="$p/$fl/$s${note:+ !}"
		total_pass[$rt]=$((total_pass[$rt] + p))
		total_fail[$rt]=$((total_fail[$rt] + fl))
		total_skip[$rt]=$((total_skip[$rt] + s))
		printf '   %-28s %3s pass %3s fail %3s skip %4ss%s\n' "$f" "$p" "$fl" "$s" "$secs" "${note:+  ($note)}"
	done
	seconds[$rt]=$(($(date +%s) - rt_start))
	status[$rt]=ran
	printf 'total\t%s\t%s\t%s\t%s\t\n' "${total_pass[$rt]}" "${total_fail[$rt]}" "${total_skip[$rt]}" "${seconds[$rt]}" >>"$out/summary.tsv"
done

# The table: one row per file, pass/fail/skip per runtime ("!" marks a note in
# results/<runtime>/summary.tsv: timeout, tests not reported, cleanup done).
{
	echo
	echo "runc integration suite (pass/fail/skip per file)"
	printf '%-30s' file
	for rt in $runtimes; do printf ' %-14s' "$rt"; done
	echo
	for f in "${file_list[@]}"; do
		printf '%-30s' "$f"
		for rt in $runtimes; do printf ' %-14s' "${cell[$rt,$f]:--}"; done
		echo
	done
	printf '%-30s' total
	for rt in $runtimes; do
		if [ "${status[$rt]}" = ran ]; then
			printf ' %-14s' "${total_pass[$rt]}/${total_fail[$rt]}/${total_skip[$rt]}"
		else
			printf ' %-14s' "not run"
		fi
	done
	echo
	printf '%-30s' "wall time"
	for rt in $runtimes; do printf ' %-14s' "${seconds[$rt]:+${seconds[$rt]}s}"; done
	echo
	for rt in $runtimes; do
		[ "${status[$rt]}" = ran ] || echo "$rt ${status[$rt]}"
	done
} | tee "$results/table.txt"

# The yardstick. With runc in the same run, brig must pass every test runc
# passes on this host, but those known-differences.txt names (tests of runc's
# own name): a count would move with the host (runc's sshfs test skips where
# sshfs is missing). The record is then printed beside it; without runc, brig's
# count must reach the record.
passed_tests() { # runtime -> "file: test name" of each test it passed
	local f
	for f in "${file_list[@]}"; do
		[ -f "$results/$1/${f%.bats}.tap" ] || continue
		sed -nE "/^ok [0-9]+ .*# skip/d; s/^ok [0-9]+ (.*)\$/$f: \\1/p" "$results/$1/${f%.bats}.tap"
	done | sort -u
}
rc=0
case " $runtimes " in
*" brig "*)
	record=$(grep -m1 -E '^[0-9]+[[:space:]]*$' "$record_file" | tr -d '[:space:]' || true)
	: "${record:=0}"
	got=${total_pass[brig]:-0}
	if [ "${status[runc]:-}" = ran ] && [ "${status[brig]:-}" = ran ]; then
		known=$(grep -vE '^(#|[[:space:]]*$)' "$here/known-differences.txt" | sort -u)
		behind=$(comm -23 <(passed_tests runc) <(passed_tests brig) | comm -23 - <(cat <<<"$known"))
		if [ -n "$behind" ]; then
			echo "brig fails these tests, which runc passes on this host: FAIL"
			sed 's/^/   /' <<<"$behind"
			rc=1
		else
			echo "brig passes every test runc passes on this host (${total_pass[runc]}), but the" \
				"$(grep -c . <<<"$known") of known-differences.txt: brig $got, record $record: OK"
		fi
	elif [ "$got" -lt "$record" ]; then
		echo "brig passes $got tests, below the record of $record in ${record_file#"$top"/}: FAIL"
		rc=1
	else
		echo "brig passes $got tests; record ${record_file#"$top"/}: $record: OK"
	fi
	if [ -n "$raise_record" ] && [ "$got" -gt "$record" ]; then
		sed -i -E "0,/^[0-9]+[[:space:]]*$/s//$got/" "$record_file"
		echo "record raised to $got"
	fi
	;;
esac
exit "$rc"
