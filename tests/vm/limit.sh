# Sourced by the guest scripts (POSIX sh). run_limited SECONDS COMMAND...: runs COMMAND under
# timeout(1) (TERM at SECONDS, KILL 10 s later; status 124 when it timed out). Five seconds
# before the limit the guest's processes are listed (less kernel threads), with what each
# waits in, so that a test that hangs says where: the console log is all CI keeps of a guest.
run_limited() {
  rl_limit=$1
  shift
  (
    # (The sleep holds no output: a pipe the caller reads, as run_test_binary's tee, would
    # otherwise stay open until it ends, though this watch is killed.)
    sleep $((rl_limit > 10 ? rl_limit - 5 : rl_limit)) < /dev/null > /dev/null 2>&1
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

# run_test_binary SECONDS BINARY ARGS...: a test binary under run_limited, with
# --test-threads=2; where it fails, the tests that did not pass (failed, hung, or never
# started before the limit: the binary's --list for ARGS less libtest's "... ok" lines) run
# once more under the same limit, as the bats runner gives brig a second run of the tests it
# failed: an emulated guest stalls now and then. The first failure is printed either way
# ("guest: RETRY ..."), a pass on retry says so ("passed on retry"), and a second failure is
# the verdict. Returns the last run's status.
run_test_binary() {
  rt_limit=$1 rt_bin=$2
  shift 2
  rt_out=$(mktemp)
  { run_limited "$rt_limit" "$rt_bin" --test-threads=2 "$@"; echo "$?" > "$rt_out.rc"; } 2>&1 | tee "$rt_out"
  rt_rc=$(cat "$rt_out.rc")
  if [ "$rt_rc" != 0 ]; then
    tr -d '\r' < "$rt_out" | sed -n 's/^test \(.*\) \.\.\. \(ok\|ignored.*\)$/\1/p' > "$rt_out.ok"
    rt_names=$("$rt_bin" --list "$@" 2>/dev/null | sed -n 's/: test$//p' | grep -vxF -f "$rt_out.ok" | tr '\n' ' ')
    if [ -n "$rt_names" ]; then
      echo "guest: RETRY ${rt_bin##*/} (status $rt_rc): once more: $rt_names"
      # shellcheck disable=SC2086 # one word a test name
      run_limited "$rt_limit" "$rt_bin" --test-threads=2 --exact $rt_names
    else
      echo "guest: RETRY ${rt_bin##*/} (status $rt_rc, no test left unpassed): the whole binary once more"
      run_limited "$rt_limit" "$rt_bin" --test-threads=2 "$@"
    fi
    rt_rc=$?
    [ "$rt_rc" != 0 ] || echo "guest: ${rt_bin##*/} passed on retry (failed once: ${rt_names:-the whole binary})"
  fi
  rm -f "$rt_out" "$rt_out.rc" "$rt_out.ok"
  return "$rt_rc"
}
