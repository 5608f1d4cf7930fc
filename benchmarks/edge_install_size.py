"""Disk size of the torch-free edge install, as pip leaves it and as a deployment would ship it.

Each variant is installed into a fresh virtual environment under a temporary folder (PyPI or
whatever index pip is configured with) and measured with ``du``, in three ways:

* ``plain``: ``python -m venv`` + ``pip install`` (what a user gets: pip and setuptools in the
  venv, every module compiled to ``.pyc``);
* ``no-pip``: ``python -m venv --without-pip`` + ``pip --python VENV/bin/python install``: the
  deployment venv, no installer in it (deploy/Dockerfile.client ships /opt/edge like this);
* ``no-pip-slim``: the deployment venv slimmed as the client image ships it
  (``python -m client.slim_install VENV --check models``: ONNX Runtime's unused C-API library
  and offline tools, numpy's tests, the cascades the client does not load), after which the
  client's encoder and face detector must still run in it;
* ``no-pip-no-pyc``: ``no-pip`` with ``--no-compile``: no ``.pyc`` (every process start then
  compiles what it imports, unless the venv is writable and bytecode writing is on).

Variants: ``edge`` is ``'.[edge]'`` exactly as pyproject.toml declares it; the others are the
same requirements with one dependency swapped (OpenCV for dlib-bin + PyAV, another ONNX
Runtime), the alternatives docs/CLIENT.md weighs:

    .venv/bin/python -m benchmarks.edge_install_size                       # ~5 min, all
    .venv/bin/python -m benchmarks.edge_install_size --variant edge --mode no-pip
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("plain", "no-pip", "no-pip-slim", "no-pip-no-pyc")

# name -> (requirements to drop, by their distribution name; requirements to add)
SWAPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "edge": ((), ()),
    # Face detection by dlib's HOG detector, video files and cameras by PyAV (FFmpeg).
    "dlib-pyav": (("opencv-python-headless",), ("dlib-bin", "av")),
    # The oldest ONNX Runtime whose sympy is optional, with OpenCV / with dlib + an older PyAV.
    "ort-1.25": (("onnxruntime",), ("onnxruntime==1.25.1",)),
    "dlib-pyav13-ort-1.25": (
        ("opencv-python-headless", "onnxruntime"),
        ("dlib-bin", "av==13.1.0", "onnxruntime==1.25.1"),
    ),
}


def _dist_name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower()


def requirements(variant: str, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The base dependencies + the edge extra of ``pyproject``, with ``variant``'s swap."""
    project = tomllib.loads(pyproject.read_text())["project"]
    drop, add = SWAPS[variant]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["edge"]]
    kept = [r for r in reqs if _dist_name(r) not in drop]
    missing = set(drop) - {_dist_name(r) for r in reqs}
    if missing:
        raise ValueError(f"{variant}: the edge extra has no {sorted(missing)} to swap")
    return [*kept, *add]


def du_mib(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def project_copy(dest: Path) -> Path:
    """The files ``pip install .`` reads, copied to ``dest``: setuptools builds in the source
    folder, and its ``build/`` must not land in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for package in ("core", "client", "cli", "proto", "service", "training"):
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return dest


def install(variant: str, mode: str, venv: Path, project: Path) -> int:
    """Build ``venv`` for ``variant`` in ``mode``; its size in MiB (``du -sm``)."""
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if mode == "plain":
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    else:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [*pip, "--python", str(python)]
    flags = ["install", "-q"] + (["--no-compile"] if mode.endswith("pyc") else [])
    if variant == "edge":  # the project's own declaration, as a user installs it
        subprocess.run([*pip, *flags, f"{project}[edge]"], check=True)
    else:  # the swapped requirements, then the project without its declared ones
        subprocess.run([*pip, *flags, *requirements(variant)], check=True)
        subprocess.run([*pip, *flags, "--no-deps", str(project)], check=True)
    leaked = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is not None)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if leaked != "False":
        raise RuntimeError(f"{variant}: torch got into the edge install")
    if mode.endswith("slim"):
        slim = [sys.executable, "-m", "client.slim_install", str(venv), "--check", "models"]
        subprocess.run(slim, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return du_mib(venv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", choices=sorted(SWAPS), help="default: all")
    ap.add_argument("--mode", action="append", choices=MODES, help="default: all four")
    args = ap.parse_args(argv)
    variants, modes = args.variant or list(SWAPS), args.mode or list(MODES)
    print(f"| variant | {' | '.join(modes)} |")
    print(f"|---|{'---:|' * len(modes)}")
    for variant in variants:
        sizes = []
        for mode in modes:
            with tempfile.TemporaryDirectory(prefix="fercomp-edge-size-") as tmp:
                project = project_copy(Path(tmp) / "src")
                sizes.append(f"{install(variant, mode, Path(tmp) / 'venv', project)} MiB")
        print(f"| {variant} | {' | '.join(sizes)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
