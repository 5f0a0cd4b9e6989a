#!/usr/bin/env bash
# The measurements of bench/run.sh, run by it inside a private mount namespace:
#   unshare -m --propagation private bash measure.sh NAME=PATH...
# env: WORK (bundle/, sleeper/, results/), HIDE (a file to over-mount empty, or ""), RUNS,
# WARMUP, RSS_RUNS, SCALE. Prints the tables on stdout; progress on stderr.
set -uo pipefail

[ -z "$HIDE" ] || mount --bind "$WORK/empty" "$HIDE" || exit 1
BUNDLE=$WORK/bundle
SLEEPER=$WORK/sleeper
RES=$WORK/results
declare -A RT=()
NAMES=()
for a in "$@"; do
    NAMES+=("${a%%=*}")
    RT[${a%%=*}]=${a#*=}
done
log() { printf '==> %s\n' "$*" >&2; }
rt() { # NAME ARGS...: the runtime NAME with its own state root
    local n=$1
    shift
    "${RT[$n]}" --root "$WORK/root-$n" "$@"
}
seq_id=0
next_id() { seq_id=$((seq_id + 1)); id="b${BASHPID}-$seq_id"; }

# ---------------------------------------------------------------- one timed step of each case
case_floor() { unshare -mpnuiC -f /bin/true; }
case_run() { next_id; rt "$1" run --bundle "$BUNDLE" "$id" </dev/null; }
case_cycle() {
    next_id
    rt "$1" create --bundle "$BUNDLE" "$id" </dev/null || return 1
    rt "$1" start "$id" || return 1
    local s i
    for ((i = 0; i < 5000; i++)); do
        s=$(rt "$1" state "$id") || return 1
        case $s in *'"stopped"'*) break ;; esac
    done
    rt "$1" delete "$id"
}
case_exec() { rt "$1" exec "exec-$1" /bin/true; }
case_seccomp() { next_id; rt "$1" run --bundle "$WORK/seccomp" "$id" </dev/null; }

# Medians of the wall time and of the CPU time (user + system, the runtime's and every
# process it waited for) in ms, as "WALL CPU".
median_of() { sort -n | awk '{a[NR]=$1} END {if (NR) printf "%.2f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; else printf "-"}'; }
declare -A WALL=() CPU=() FAILED=()
TIMEFORMAT='%3R %3U %3S'
# rounds CASE NAMES...: WARMUP + RUNS rounds, each running CASE once for every name, the
# order rotating by one name each round.
rounds() {
    local c=$1 i k n t
    shift
    local names=("$@") order
    for ((i = 0; i < WARMUP + RUNS; i++)); do
        k=$((i % ${#names[@]}))
        order=("${names[@]:k}" "${names[@]:0:k}")
        for n in "${order[@]}"; do
            # Wall time to the microsecond around the step (no subshell in between); CPU
            # time from bash's `time` (to the millisecond).
            s=${EPOCHREALTIME/./}
            { time "case_$c" "$n" >/dev/null 2>>"$RES/$n-$c.err"; } 2>"$RES/time" ||
                { FAILED[$n-$c]=1; continue; }
            e=${EPOCHREALTIME/./}
            [ "$i" -lt "$WARMUP" ] && continue
            read -r t u sy <"$RES/time"
            echo $((e - s)) >>"$RES/$n-$c.wall"
            awk -v u="$u" -v s="$sy" 'BEGIN {print (u + s) * 1000}' >>"$RES/$n-$c.cpu"
        done
    done
    for n in "${names[@]}"; do
        WALL[$n-$c]=$(awk '{print $1 / 1000}' "$RES/$n-$c.wall" 2>/dev/null | median_of)
        CPU[$n-$c]=$(median_of <"$RES/$n-$c.cpu" 2>/dev/null)
    done
}

for n in "${NAMES[@]}"; do
    mkdir -p "$WORK/root-$n"
    if ! case_run "$n" >/dev/null 2>"$RES/$n-sanity.err"; then
        printf '%s: a sanity run failed (%s); left out\n' "$n" "$(tail -1 "$RES/$n-sanity.err")"
        unset "RT[$n]"
    fi
done
NAMES=()
for n in brig crun runc; do [ -n "${RT[$n]:-}" ] && NAMES+=("$n"); done

log "floor: unshare -mpnuiC -f /bin/true"
RT[floor]=unshare
rounds floor floor
log "run of /bin/true: ${NAMES[*]}"
rounds run "${NAMES[@]}"
log "create, start, state until stopped, delete: ${NAMES[*]}"
rounds cycle "${NAMES[@]}"
if [ -f "$WORK/seccomp/config.json" ]; then
    log "run of /bin/true with a seccomp profile: ${NAMES[*]}"
    rounds seccomp "${NAMES[@]}"
fi
log "exec of /bin/true into a running container: ${NAMES[*]}"
for n in "${NAMES[@]}"; do
    rt "$n" run -d --bundle "$SLEEPER" "exec-$n" </dev/null >/dev/null 2>&1 || FAILED[$n-exec]=1
done
rounds exec "${NAMES[@]}"
for n in "${NAMES[@]}"; do rt "$n" delete -f "exec-$n" >/dev/null 2>&1; done

log "peak RSS of run (time -f %M), $RSS_RUNS rounds"
declare -A RSS=()
for ((i = 0; i < RSS_RUNS; i++)); do
    for n in "${NAMES[@]}"; do
        next_id
        /usr/bin/time -f %M -o "$RES/rss.out" "${RT[$n]}" --root "$WORK/root-$n" run \
            --bundle "$BUNDLE" "$id" </dev/null >/dev/null 2>&1 && cat "$RES/rss.out" >>"$RES/$n-rss"
    done
done
for n in "${NAMES[@]}"; do RSS[$n]=$(median_of <"$RES/$n-rss" 2>/dev/null | cut -d. -f1); done

# ---------------------------------------------------------------- scale
# SCALE containers (the sleeper) created and started all at once, then deleted all at once
# (delete -f), one runtime after the other; and the create+start+delete of one more
# container alone, with none and with SCALE of its own running: a runtime whose cost per
# container grows with their number (a scan of /proc, of its state root or of the mount
# table per container) shows a ratio above 1 there.
declare -A UP=() DOWN=() ONE0=() ONEN=()
one_more() { # NAME -> ms of create+start+delete -f of one container, median of 5
    local n=$1 i s e
    for ((i = 0; i < 5; i++)); do
        next_id
        s=${EPOCHREALTIME/./}
        rt "$n" create --bundle "$SLEEPER" "$id" </dev/null >/dev/null 2>&1 &&
            rt "$n" start "$id" >/dev/null 2>&1
        rt "$n" delete -f "$id" >/dev/null 2>&1
        e=${EPOCHREALTIME/./}
        echo $(((e - s) / 1000))
    done | median_of
}
if [ "$SCALE" -gt 0 ]; then
    for n in "${NAMES[@]}"; do
        log "scale: $n, $SCALE containers"
        ONE0[$n]=$(one_more "$n")
        s=${EPOCHREALTIME/./}
        for ((i = 0; i < SCALE; i++)); do
            (rt "$n" create --bundle "$SLEEPER" "s-$n-$i" </dev/null >/dev/null 2>&1 &&
                rt "$n" start "s-$n-$i" >/dev/null 2>&1) &
        done
        wait
        e=${EPOCHREALTIME/./}
        up=$(rt "$n" list 2>/dev/null | grep -c ' running ')
        UP[$n]=$(awk -v d=$((e - s)) 'BEGIN {printf "%.2f", d / 1e6}')
        [ "$up" -eq "$SCALE" ] || UP[$n]+=" ($up running)"
        ONEN[$n]=$(one_more "$n")
        s=${EPOCHREALTIME/./}
        for ((i = 0; i < SCALE; i++)); do
            rt "$n" delete -f "s-$n-$i" >/dev/null 2>&1 &
        done
        wait
        e=${EPOCHREALTIME/./}
        DOWN[$n]=$(awk -v d=$((e - s)) 'BEGIN {printf "%.2f", d / 1e6}')
        left=$(rt "$n" list -q 2>/dev/null | wc -l)
        [ "$left" -eq 0 ] || DOWN[$n]+=" ($left left)"
    done
fi

# ---------------------------------------------------------------- report
ratio() { # A B -> A/B as "0.75x", or n/a
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
        if (a == "" || b == "" || a == "-" || b == "-" || b + 0 <= 0) print "n/a"; else printf "%.2fx", a / b }'
}
cell() { if [ -n "${FAILED[$1]:-}" ]; then printf 'failed'; else printf '%s' "${2:--}"; fi; }
echo
printf 'floor (unshare -mpnuiC -f /bin/true): %s ms wall, %s ms cpu (median)\n\n' "${WALL[floor-floor]}" "${CPU[floor-floor]}"
printf '%-7s | %18s | %18s | %18s | %18s | %9s\n' "" "run ms" "cycle ms" "exec ms" "run+seccomp ms" "peak RSS"
printf '%-7s | %8s %9s | %8s %9s | %8s %9s | %8s %9s | %9s\n' runtime wall cpu wall cpu wall cpu wall cpu KB
for n in "${NAMES[@]}"; do
    printf '%-7s | %8s %9s | %8s %9s | %8s %9s | %8s %9s | %9s\n' "$n" \
        "$(cell "$n-run" "${WALL[$n-run]}")" "$(cell "$n-run" "${CPU[$n-run]}")" \
        "$(cell "$n-cycle" "${WALL[$n-cycle]}")" "$(cell "$n-cycle" "${CPU[$n-cycle]}")" \
        "$(cell "$n-exec" "${WALL[$n-exec]}")" "$(cell "$n-exec" "${CPU[$n-exec]}")" \
        "$(cell "$n-seccomp" "${WALL[$n-seccomp]:-}")" "$(cell "$n-seccomp" "${CPU[$n-seccomp]:-}")" "${RSS[$n]:--}"
done
if [ -n "${RT[brig]:-}" ]; then
    echo
    for b in crun runc; do
        [ -n "${RT[$b]:-}" ] || continue
        printf 'brig/%s: run %s (cpu %s)  cycle %s (cpu %s)  exec %s (cpu %s)  run+seccomp %s (cpu %s)  rss %s\n' "$b" \
            "$(ratio "${WALL[brig-run]}" "${WALL[$b-run]}")" "$(ratio "${CPU[brig-run]}" "${CPU[$b-run]}")" \
            "$(ratio "${WALL[brig-cycle]}" "${WALL[$b-cycle]}")" "$(ratio "${CPU[brig-cycle]}" "${CPU[$b-cycle]}")" \
            "$(ratio "${WALL[brig-exec]}" "${WALL[$b-exec]}")" "$(ratio "${CPU[brig-exec]}" "${CPU[$b-exec]}")" \
            "$(ratio "${WALL[brig-seccomp]:-}" "${WALL[$b-seccomp]:-}")" "$(ratio "${CPU[brig-seccomp]:-}" "${CPU[$b-seccomp]:-}")" \
            "$(ratio "${RSS[brig]}" "${RSS[$b]}")"
    done
    echo "(ratio < 1: brig is faster / smaller; wall and cpu are separate medians)"
fi
if [ "$SCALE" -gt 0 ]; then
    echo
    printf '%s containers: created and started all at once, deleted all at once; one more alone (create+start+delete, median of 5) with 0 and %s running\n' "$SCALE" "$SCALE"
    printf '%-7s | %10s | %10s | %12s | %12s | %8s\n' runtime "up s" "down s" "one, 0 ms" "one, $SCALE ms" growth
    for n in "${NAMES[@]}"; do
        printf '%-7s | %10s | %10s | %12s | %12s | %8s\n' "$n" "${UP[$n]}" "${DOWN[$n]}" \
            "${ONE0[$n]}" "${ONEN[$n]}" "$(ratio "${ONEN[$n]}" "${ONE0[$n]}")"
    done
    if [ -n "${RT[brig]:-}" ]; then
        for b in crun runc; do
            [ -n "${RT[$b]:-}" ] || continue
            printf 'brig/%s: up %s  down %s  one more with %s running %s\n' "$b" \
                "$(ratio "${UP[brig]%% *}" "${UP[$b]%% *}")" "$(ratio "${DOWN[brig]%% *}" "${DOWN[$b]%% *}")" \
                "$SCALE" "$(ratio "${ONEN[brig]}" "${ONEN[$b]}")"
        done
    fi
fi
echo "(raw times in $RES)"
