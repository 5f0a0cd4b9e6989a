# Sourced by the guest scripts (POSIX sh). run_limited SECONDS COMMAND...: runs COMMAND under
# timeout(1) (TERM at SECONDS, KILL 10 s later; status 124 when it timed out). Five seconds
# before the limit the guest's processes are listed (less kernel threads), with what each
# waits in, so that a test that hangs says where: the console log is all CI keeps of a guest.
run_limited() {
  rl_limit=$1
  shift
  (
    sleep $((rl_limit > 10 ? rl_limit - 5 : rl_limit))
    echo "guest: near the ${rl_limit}s limit of $1; the guest's processes:"
    ps -eo pid,ppid,stat,etimes,wchan:24,args 2>&1 | grep -v ' \[[^]]*\]$' | sed 's/^/guest: ps: /'
  ) &
  rl_watch=$!
  timeout -k 10 "$rl_limit" "$@"
  rl_rc=$?
  kill "$rl_watch" 2>/dev/null
  wait "$rl_watch" 2>/dev/null
  return "$rl_rc"
}
