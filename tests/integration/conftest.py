"""Integration tests import the repository (lab/), the collection (collections/) and this directory
(labrunner) as plain modules; the paths are set up once here, before any test module loads."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "collections", Path(__file__).parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
