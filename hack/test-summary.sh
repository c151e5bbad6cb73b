#!/usr/bin/env bash
# test-summary.sh: passes `go test -v` output through and closes with one line of counts.
# In CI (CI=true) a skipped test fails the run: every test's servers are built by `make tools`,
# so nothing has a reason to skip there.
set -uo pipefail
passed=0 failed=0 skipped=0
skips=()
while IFS= read -r line; do
  printf '%s\n' "$line"
  case "$line" in
    *"--- PASS: "*) passed=$((passed + 1)) ;;
    *"--- FAIL: "*) failed=$((failed + 1)) ;;
    *"--- SKIP: "*) skipped=$((skipped + 1)); skips+=("${line#*--- SKIP: }") ;;
  esac
done
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "${CI:-}" = "true" ] && [ "$skipped" -gt 0 ]; then
  echo "tests: skipped in CI (not allowed): ${skips[*]}" >&2
  exit 1
fi
[ "$failed" -eq 0 ]
