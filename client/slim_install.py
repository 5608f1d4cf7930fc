"""Slim an edge install: delete what the client never loads from its virtual environment.

``pip install '.[edge]'`` brings whole packages, and three of them carry tools and data a
camera box never uses: ONNX Runtime ships its C-API library beside the Python module that
already links the runtime statically, plus offline model-optimisation tools; numpy ships its
test suite; OpenCV ships 17 Haar cascades where the client loads one. Together they are 63 MiB
of a 353 MiB deployment venv (docs/CLIENT.md "Edge install"). The client image runs this after
the install (deploy/Dockerfile.client), then ``--check``; on a device:

    python -m client.slim_install VENV --check MODELS_DIR

``--check`` then runs the client's own code in that venv: every codec's edge bundle under
MODELS_DIR encodes a face, and the face detector loads its cascade and runs. If an upgrade
makes ONNX Runtime load the library, ``--check`` fails the build instead of a camera.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from client.faces import CASCADE_FILE


@dataclass(frozen=True)
class Removal:
    pattern: str  # glob under site-packages
    why: str
    keep: str | None = None  # a file name the pattern matches that stays


REMOVALS = (
    Removal(
        "onnxruntime/capi/libonnxruntime.so*",
        "the C API's copy of the runtime: onnxruntime_pybind11_state links it statically and "
        "never loads this one (no mapping of it in /proc/self/maps after a session runs)",
    ),
    Removal("onnxruntime/transformers", "offline transformer-model optimisation tools"),
    Removal("onnxruntime/tools", "offline model conversion and inspection tools"),
    Removal("onnxruntime/quantization", "offline quantisation tools"),
    Removal("onnxruntime/datasets", "sample models"),
    Removal("onnxruntime/backend", "the ONNX backend-test API (needs onnx, not installed)"),
    Removal("numpy/**/tests", "numpy's own test suite (numpy.testing stays)"),
    Removal("cv2/data/haarcascade_*.xml", "cascades the client does not load", CASCADE_FILE),
)

CHECK = """
import sys
from pathlib import Path

import numpy as np

from client.faces import FaceDetector
from core.edge_codec import EdgeCodec, has_bundle

FaceDetector().detect(np.zeros((120, 160), np.uint8))  # its cascade file, OpenCV's detector
codecs = 0
for art in sorted(Path(sys.argv[1]).glob("*/*")):
    if has_bundle(art):
        codec = EdgeCodec.load(art)
        face = np.full((1, codec.in_channels, 48, 48), 0.5, np.float32)
        blobs, _ = codec.encode_latents(face)  # ONNX Runtime, the hyper path, the ANS coder
        assert blobs and blobs[0], art
        codecs += 1
assert codecs, f"no codec with an edge bundle under {sys.argv[1]}"
print(f"edge install works: {codecs} codecs encode a face, the face detector runs")
"""


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"{venv}: expected one lib/python3*/site-packages, found {len(found)}")
    return found[0]


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _matches(root: Path) -> Iterator[tuple[Removal, Path]]:
    for removal in REMOVALS:
        for path in sorted(root.glob(removal.pattern)):
            if path.name != removal.keep:
                yield removal, path


def slim(venv: Path, dry_run: bool = False) -> list[tuple[Removal, Path, int]]:
    """Delete every ``REMOVALS`` match in ``venv``; returns (removal, path, bytes) for each."""
    root = site_packages(venv)
    done: list[tuple[Removal, Path, int]] = []
    taken: set[Path] = set()
    for removal, path in list(_matches(root)):
        if taken.intersection(path.parents):  # inside a folder already taken (dry run too)
            continue
        taken.add(path)
        size = _size(path)
        if not dry_run:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        done.append((removal, path, size))
    return done


def check(venv: Path, models: Path) -> None:
    """Run the client's encoder and face detector with ``venv``'s Python (raises on failure)."""
    python = venv / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", CHECK, str(models)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"the slimmed edge install does not work:\n{out.stderr.strip()}")
    print(out.stdout.strip())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m client.slim_install", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("venv", type=Path, help="the edge virtual environment")
    p.add_argument("--check", type=Path, metavar="MODELS_DIR", help="then run the client there")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    args = p.parse_args(argv)
    removed = slim(args.venv, args.dry_run)
    root = site_packages(args.venv)
    for removal, path, size in removed:
        print(f"{size / 2**20:6.1f} MiB  {path.relative_to(root)}  ({removal.why})")
    total = sum(size for _, _, size in removed)
    print(f"{'would remove' if args.dry_run else 'removed'} {total / 2**20:.1f} MiB")
    if args.check is not None:
        try:
            check(args.venv, args.check)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
