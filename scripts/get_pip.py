"""Stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com
(unreachable here): bootstrap pip with ensurepip, then install the pip version ansible-test
asks for from the configured package index. make setup puts it in ansible-test's cache."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if not a.startswith("--") or a in ("--no-cache-dir",)]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
