"""Print the third-party requirements of the server and client images (pyproject's
dependencies plus the serve and client extras), one per line, for the local wheelhouse."""

import sys
import tomllib
from pathlib import Path

root = Path(__file__).resolve().parents[2]
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
reqs = list(project["dependencies"])
for extra in ("serve", "client"):
    reqs += project["optional-dependencies"][extra]
# The build backend (setuptools) and pip itself, so the image builds need no index at all.
reqs += ["pip", "setuptools>=68", "wheel"]
sys.stdout.write("".join(f"{r}\n" for r in dict.fromkeys(reqs)))
