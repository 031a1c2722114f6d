#!/usr/bin/env bash
# The test suite behind `make test` (CI runs exactly this via .ci/run).
# Usage: scripts/test.sh [lint|unit|sanity|integration|molecule]...   (default: all, in that order)
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$PWD/collections"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
# A skipped test is a failed test here: make setup installs every prerequisite.
export KUBEFLAT_STRICT_SKIPS=1
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(lint unit sanity integration molecule)

failed=()
run_phase() {
  local name=$1; shift
  echo "=== $name: $*"
  local start=$SECONDS
  if "$@"; then
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

lint() {
  yamllint -s . && ansible-lint --offline --profile production
}

molecule_all() {
  local rc=0 scenario
  for scenario in molecule/*/molecule.yml; do
    [ -e "$scenario" ] || continue
    scenario=$(basename "$(dirname "$scenario")")
    echo "--- molecule scenario: $scenario"
    molecule test -s "$scenario" || rc=1
  done
  return $rc
}

for phase in "${phases[@]}"; do
  case $phase in
    lint) run_phase lint lint ;;
    unit) run_phase unit pytest -q tests/unit ;;
    sanity) run_phase sanity bash scripts/sanity.sh ;;
    integration) run_phase integration pytest -q -p no:cacheprovider tests/integration ;;
    molecule) run_phase molecule molecule_all ;;
    *) echo "unknown phase $phase"; exit 2 ;;
  esac
done
# Tests tear down their own labs; in CI also sweep any lab a crashed test left behind
# (not on a workstation, where it would stop labs someone else is using).
if [ "${CI:-}" = true ]; then
  .venv/bin/python -m lab down --all >/dev/null 2>&1 || true
fi
left=$(ip netns list 2>/dev/null | grep -c '^kflab-' || true)
[ "$left" -gt 0 ] && echo "note: $left lab network namespace(s) still present (ip netns list)"

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED phases: ${failed[*]}"
  exit 1
fi
echo "all phases passed: ${phases[*]}"
