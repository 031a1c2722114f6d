"""`python -m lab ...` (from the repository root): the lab's command line, see lab/cli.py."""
import sys

if not __package__:                      # `python lab ...`: make the package importable
    from pathlib import Path
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    __package__ = "lab"

from lab.cli import main  # noqa: E402

sys.exit(main())
