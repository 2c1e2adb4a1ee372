#!/usr/bin/env bash
# timed.sh NAME CMD...     run CMD, then print "== NAME: ok|FAILED in Ns"; with
#                          BERTH_TIMINGS=FILE also append "NAME SECONDS STATUS" to FILE.
#                          Exit status: CMD's.
# timed.sh --summary FILE  print the steps collected in FILE, and their total.
set -uo pipefail

if [ "${1-}" = --summary ]; then
  [ -s "${2-}" ] || exit 0
  echo "== timings"
  awk '{ printf "   %-14s %6ds  %s\n", $1, $2, $3; t += $2 } END { printf "   %-14s %6ds\n", "total", t }' "$2"
  exit 0
fi
[ $# -ge 2 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
name=$1; shift
echo "== $name: $*"
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
status=ok; [ $rc -eq 0 ] || status=FAILED
echo "== $name: $status in ${secs}s"
[ -z "${BERTH_TIMINGS:-}" ] || echo "$name $secs $status" >>"$BERTH_TIMINGS"
exit $rc
