"""kubeflat lab substrate: systemd-nspawn nodes in network namespaces (see lab/kubeflat_lab.py)."""
