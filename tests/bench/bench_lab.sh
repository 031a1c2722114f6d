#!/usr/bin/env bash
# Benchmark the lab substrate itself (not a test): for each fleet inventory, time
#   up (cold: nodes booted until every sshd answers; rootfs already cached),
#   up again (idempotent no-op), restart of one node (real reboot, netns recreated),
#   and down (everything removed).
# Usage: tests/bench/bench_lab.sh [fleet5 fleet50 ...]   (run as root from anywhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=(.venv/bin/python -m lab)
fleets=("$@")
[ ${#fleets[@]} -eq 0 ] && fleets=(fleet5 fleet50)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now); "${LAB[@]}" rootfs >/dev/null
echo "rootfs (cached unless first run): $(since "$t") s"

results=()
for fleet in "${fleets[@]}"; do
  inv=tests/bench/inventories/$fleet
  "${LAB[@]}" down --inventory "$inv" >/dev/null 2>&1 || true
  trap '"${LAB[@]}" down --inventory "$inv" >/dev/null 2>&1 || true' EXIT
  n=$(.venv/bin/ansible-inventory -i "$inv" --list | .venv/bin/python -c \
      'import json,sys; print(len(json.load(sys.stdin)["_meta"]["hostvars"]))')
  t=$(now); "${LAB[@]}" up --inventory "$inv" >/dev/null 2>&1; up=$(since "$t")
  t=$(now); "${LAB[@]}" up --inventory "$inv" >/dev/null 2>&1; again=$(since "$t")
  t=$(now); "${LAB[@]}" restart --inventory "$inv" --host w1 >/dev/null 2>&1; restart=$(since "$t")
  t=$(now); "${LAB[@]}" down --inventory "$inv" >/dev/null 2>&1; down=$(since "$t")
  trap - EXIT
  left=$(ip netns list | grep -c "^kflab-$fleet-" || true)
  results+=("$(printf '%-8s %5s %8s %9s %9s %8s %9s' "$fleet" "$n" "$up" "$again" "$restart" "$down" "$left")")
done
echo
printf '%-8s %5s %8s %9s %9s %8s %9s\n' fleet nodes "up (s)" "re-up (s)" "restart" "down (s)" "netns left"
printf '%s\n' "${results[@]}"
echo "(load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs)"
