# kubeflat — every entry point a user or CI needs. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections

INVENTORY ?= inventories/lab
PLAYBOOK ?= site.yml
ARGS ?=
HOST ?=
CMD ?=
LAB := $(PY) -m lab

.PHONY: help setup demo test lint sanity unit integration molecule bench bench-ansible bench-specs bench-dataplane lab-up lab-down lab-play lab-exec lab-shell lab-status lab-restart

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

setup: ## install apt packages, the .venv and the Ansible collections (idempotent)
	@bash scripts/setup.sh

demo: setup ## build the lab from inventories/lab, run site.yml inside it, leave it running
	@bash scripts/demo.sh "$(INVENTORY)"

test: setup ## lint, unit, integration (lab) and molecule tests; CI runs exactly this
	@bash scripts/test.sh

lint: setup ## ansible-lint (production profile) and yamllint
	@bash scripts/test.sh lint

sanity: setup ## ansible-test sanity on the built collection (no containers; exceptions in tests/sanity)
	@bash scripts/sanity.sh

unit: setup ## unit tests of plugins/
	@bash scripts/test.sh unit

integration: setup ## integration tests on real lab hosts
	@bash scripts/test.sh integration

molecule: setup ## molecule scenarios on the lab substrate
	@bash scripts/test.sh molecule

bench: setup ## benchmarks (tests/bench): lab-up, ansible runs, rendering
	@bash scripts/bench.sh

bench-ansible: setup ## converged-run cost vs a bare ping: make bench-ansible ARGS='--rounds 5 fleet5'
	@$(PY) tests/bench/bench_ansible.py $(ARGS)

bench-specs: setup ## rendering 1,000 apps with the real checkers, cold and warm
	@$(PY) tests/bench/bench_specs.py $(ARGS)

bench-dataplane: setup ## iperf3/ping between real CNI pods: routed vs VXLAN, bare veth, NAT (ARGS='--rounds 5')
	@$(PY) tests/bench/bench_dataplane.py $(ARGS)

lab-up: setup ## boot one node per inventory host: make lab-up INVENTORY=dir
	@$(LAB) up --inventory "$(INVENTORY)"

lab-down: ## stop the lab and remove every namespace, mount and process it made
	@$(LAB) down --inventory "$(INVENTORY)"

lab-status: ## show the lab's nodes
	@$(LAB) status --inventory "$(INVENTORY)"

lab-play: ## run a playbook from inside the lab: make lab-play PLAYBOOK=site.yml ARGS='--tags routes'
	@$(LAB) play --inventory "$(INVENTORY)" --playbook "$(PLAYBOOK)" -- $(ARGS)

lab-exec: ## run one command as root on a node: make lab-exec HOST=w1 CMD='ip route'
	@$(LAB) exec --inventory "$(INVENTORY)" --host "$(HOST)" -- $(CMD)

lab-shell: ## open a root shell on a node: make lab-shell HOST=w1
	@$(LAB) shell --inventory "$(INVENTORY)" --host "$(HOST)"

lab-restart: ## reboot one node (namespace recreated), wait for sshd
	@$(LAB) restart --inventory "$(INVENTORY)" --host "$(HOST)"
