"""Print third-party requirements for the local wheelhouse, one per line.

Default: the server image's virtual environment (pyproject's dependencies plus the serve
extra, and pip/setuptools/wheel so the image builds need no index at all). ``--edge``: the
torch-free edge client's (the dependencies plus the edge extra), the virtual environment the
client image is built from (deploy/Dockerfile.client). The wheelhouse holds both. An extra that
names the project itself (``fercomp[edge]``) is expanded to that extra's requirements.
"""

import sys
import tomllib
from pathlib import Path

root = Path(__file__).resolve().parents[2]
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]


def expand(reqs: list[str]) -> list[str]:
    out: list[str] = []
    for r in reqs:
        name, _, rest = r.partition("[")
        if name.strip() == project["name"]:
            for extra in rest.rstrip("]").split(","):
                out += expand(extras[extra.strip()])
        else:
            out.append(r)
    return out


if "--edge" in sys.argv[1:]:
    reqs = expand([*project["dependencies"], *extras["edge"]])
else:
    reqs = expand([*project["dependencies"], *extras["serve"]])
    # The build backend (setuptools) and pip itself, so the image builds need no index at all.
    reqs += ["pip", "setuptools>=68", "wheel"]
sys.stdout.write("".join(f"{r}\n" for r in dict.fromkeys(reqs)))
