#!/usr/bin/env bash
# `make sanity`: ansible-test sanity on the collection as Galaxy users get it. Builds the
# tarball, installs it into an empty temporary path and runs every sanity test that needs no
# container, locally, on the .venv's Python. Skipped, with reasons:
#   shellcheck - the shellcheck binary is not installed (the collection ships no shell script
#                that runs on hosts; scripts/ is not part of the tarball)
#   pslint     - PowerShell is not installed; the collection has no PowerShell
# No ignore file: controller-only code (PyYAML) lives in plugins/plugin_utils.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$ROOT/.venv/bin:$PATH"
py=$("$ROOT/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ansible-galaxy collection build --force --output-path "$tmp" "$ROOT" >/dev/null
ansible-galaxy collection install --force --no-deps -p "$tmp/c" "$tmp"/kubeflat-cluster-*.tar.gz >/dev/null 2>&1
cd "$tmp/c/ansible_collections/kubeflat/cluster"
ansible-test sanity --local --python "$py" --requirements --color no \
  --skip-test shellcheck --skip-test pslint "$@" 2>&1 |
  grep -vE '^(Collecting|Downloading|Installing|Successfully|Looking in|Processing|Using cached|Attempting|Found existing|Uninstalling|Requirement already| +━|WARNING: Location)' 
exit "${PIPESTATUS[0]}"
