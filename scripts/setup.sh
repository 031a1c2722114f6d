#!/usr/bin/env bash
# Install everything kubeflat needs on a fresh Debian 12 machine, as root:
#   - Debian packages (lab substrate, CNI plugins, DNS for tests)
#   - a project virtualenv (.venv) with the pinned Python tooling (requirements.txt)
#   - Ansible collections unpacked from the `ansible` wheel on PyPI (Galaxy is unreachable)
# Idempotent: a stamp file keyed on the inputs skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ANSIBLE_WHEEL_VERSION=12.3.0
COLLECTIONS="ansible/posix community/general kubernetes/core"
APT_PACKAGES="debootstrap systemd-container containernetworking-plugins iproute2 iptables nftables \
openssh-client netcat-openbsd dnsmasq-base iputils-ping unzip procps psmisc python3-venv iperf3 \
graphviz fonts-dejavu-core chromium"

# The repo root is the collection kubeflat.cluster: link it where Ansible (and the unit tests)
# find collections, so a clone runs its own modules, filters and roles by their FQCN.
link_collection() {
  mkdir -p collections/ansible_collections/kubeflat
  ln -sfn ../../.. collections/ansible_collections/kubeflat/cluster
}

stamp_input() { cat requirements.txt scripts/setup.sh; }
STAMP=.venv/.kubeflat-setup-$(stamp_input | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ -d collections/ansible_collections ]; then
  link_collection
  echo "setup: up to date ($STAMP)"; exit 0
fi

missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt

if [ ! -d collections/ansible_collections ]; then
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" "ansible==$ANSIBLE_WHEEL_VERSION"
  whl=$(ls "$tmp"/ansible-*.whl)
  mkdir -p collections.tmp
  for c in $COLLECTIONS; do
    unzip -q -o "$whl" "ansible_collections/$c/*" -d collections.tmp
  done
  rm -rf collections && mv collections.tmp collections && rm -rf "$tmp"
fi
link_collection
# ansible-test sanity (make sanity) bootstraps pip in its venvs with get-pip.py from a host that
# is unreachable here; scripts/get_pip.py does the same from the package index.
pip_cache=$HOME/.ansible/test/cache
mkdir -p "$pip_cache"
cp scripts/get_pip.py "$pip_cache/get_pip_24_2.py"   # the version ansible-core 2.19's ansible-test asks for
rm -f .venv/.kubeflat-setup-*
touch "$STAMP"
echo "setup: done (venv: $ROOT/.venv, collections: $ROOT/collections)"
