"""Unit tests import the collection the way Ansible does: ``ansible_collections.kubeflat.cluster``
(make setup links collections/ansible_collections/kubeflat/cluster to the repository root)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(ROOT, "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
