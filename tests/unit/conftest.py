"""Unit tests import plugins/module_utils and plugins/filter directly, as plain modules."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
for sub in ("plugins/module_utils", "plugins/filter", "plugins/modules"):
    path = os.path.join(ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)
