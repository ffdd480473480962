#!/bin/bash
# Checks tests/support/mpiexec-retry.sh.in against a fake mpiexec whose behaviour each case
# scripts: a rerun only for a silent SIGSEGV inside libpmix, at most 3 attempts, exit codes
# and both streams passed through, and ARGENT_MPIEXEC_DIRECT execs the real one.
# usage: test_mpiexec_retry.sh SOURCE_DIR WORK
SRC=$1 W=$2
rm -rf "$W"; mkdir -p "$W"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# The fake mpiexec: attempt N (counted in $W/n) behaves as the word N of $PLAN says:
# asan-pmix / ompi-pmix: the two crash reports with libpmix on top, exit 1;
# asan-other: a SEGV in another library; late-pmix: libpmix crash after argent logged;
# out-pmix: libpmix crash after writing to stdout; ok: prints to both streams, exit 0;
# fail: exit 3 without a crash.
cat > "$W/fake" <<'FAKE'
#!/bin/bash
n=$(( $(cat "$FAKE_DIR/n" 2>/dev/null || echo 0) + 1 )); echo $n > "$FAKE_DIR/n"
set -- $PLAN; shift $((n - 1)); what=$1
asan() {
    echo "==123==ERROR: AddressSanitizer: SEGV on unknown address (pc 0x7f T2)" >&2
    echo "    #0 0x7fad67abc9f7  ($1+0xbc9f7)" >&2
    echo "    #1 0x7fad67b80b87 in pmix_ptl_base_process_msg (/lib/x86_64-linux-gnu/libpmix.so.2+0x180b87)" >&2
}
case $what in
  asan-pmix) asan /lib/x86_64-linux-gnu/libpmix.so.2; exit 1 ;;
  ompi-pmix) printf '%s\n' "[h:1] *** Process received signal ***" "[h:1] Signal: Segmentation fault (11)" \
               "[h:1] [ 0] /lib/x86_64-linux-gnu/libc.so.6(+0x3c050)[0x7f]" \
               "[h:1] [ 1] /lib/x86_64-linux-gnu/libpmix.so.2(+0xbc9f7)[0x7f]" >&2; exit 1 ;;
  asan-other) asan /work/build/argent; exit 1 ;;
  late-pmix) echo "argent: train-bi: step 3/20" >&2; asan /lib/x86_64-linux-gnu/libpmix.so.2; exit 1 ;;
  out-pmix) echo "result 1"; asan /lib/x86_64-linux-gnu/libpmix.so.2; exit 1 ;;
  ok) echo "out $*"; echo "err line" >&2; exit 0 ;;
  fail) echo "argent: bad input" >&2; exit 3 ;;
esac
FAKE
chmod +x "$W/fake"
sed "s|@MPIEXEC_REAL@|$W/fake|" "$SRC/tests/support/mpiexec-retry.sh.in" > "$W/wrap"
chmod +x "$W/wrap"
export FAKE_DIR=$W

# case PLAN: runs the wrapper; sets rc, attempts, and the out/err files
case_() {
    rm -f "$W/n"
    PLAN="$1" "$W/wrap" a b > "$W/out" 2> "$W/err"; rc=$?
    attempts=$(cat "$W/n")
}

case_ "asan-pmix ok"
[ $rc = 0 ] && [ "$attempts" = 2 ] && ok "ASan libpmix crash before argent began: rerun, exit 0" \
    || bad "ASan libpmix crash: rc $rc after $attempts attempts"
grep -q "mpiexec-retry: a rank died of SIGSEGV inside libpmix" "$W/err" && ok "the rerun is announced" \
    || bad "no announcement of the rerun"
[ "$(cat "$W/out")" = "out ok" ] && ok "stdout of the good attempt passes through alone" \
    || bad "stdout: $(cat "$W/out")"
grep -q "^err line" "$W/err" && grep -q "AddressSanitizer: SEGV" "$W/err" && ok "stderr of both attempts passes through" \
    || bad "stderr incomplete"
case_ "ompi-pmix ompi-pmix ok"
[ $rc = 0 ] && [ "$attempts" = 3 ] && ok "Open MPI's report of a libpmix crash: two reruns, exit 0" \
    || bad "Open MPI report: rc $rc after $attempts attempts"
case_ "asan-pmix asan-pmix asan-pmix ok"
[ $rc = 1 ] && [ "$attempts" = 3 ] && ok "three crashes in a row: gives up with the job's exit code" \
    || bad "three crashes: rc $rc after $attempts attempts"
case_ "asan-other ok"
[ $rc = 1 ] && [ "$attempts" = 1 ] && ok "SEGV in another library: no rerun" || bad "other SEGV: rc $rc after $attempts"
case_ "late-pmix ok"
[ $rc = 1 ] && [ "$attempts" = 1 ] && ok "libpmix crash after argent had logged: no rerun" || bad "late crash: rc $rc after $attempts"
case_ "out-pmix ok"
[ $rc = 1 ] && [ "$attempts" = 1 ] && ok "libpmix crash after output on stdout: no rerun" || bad "crash after stdout: rc $rc after $attempts"
case_ "fail ok"
[ $rc = 3 ] && [ "$attempts" = 1 ] && ok "an ordinary failure keeps its exit code (3), no rerun" || bad "failure: rc $rc after $attempts"
rm -f "$W/n"
ARGENT_MPIEXEC_DIRECT=1 PLAN="asan-pmix ok" "$W/wrap" > /dev/null 2>&1; rc=$?
[ $rc = 1 ] && [ "$(cat "$W/n")" = 1 ] && ok "ARGENT_MPIEXEC_DIRECT=1: the real mpiexec, no rerun" \
    || bad "DIRECT: rc $rc after $(cat "$W/n") attempts"
[ $fails = 0 ] || { echo "$fails failed"; exit 1; }
echo "PASS"
