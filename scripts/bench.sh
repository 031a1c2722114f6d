#!/usr/bin/env bash
# `make bench`: benchmarks (never part of `make test`). Prints timings; asserts nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$PWD/collections"
for b in tests/bench/bench_lab.sh tests/bench/bench_ansible.py tests/bench/bench_specs.py tests/bench/bench_dataplane.py; do
  [ -e "$b" ] || continue
  echo "=== $b"
  case $b in
    *.sh) bash "$b" ;;
    *.py) .venv/bin/python "$b" ;;
  esac
done
