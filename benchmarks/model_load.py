"""What a server's start-up model loading costs: the whole repository vs the release set.

A server loads defaults.json's pair and every other codec it finds (``preload_codecs = all``,
so any bitstream it may receive decodes), and each joint codec's paired classifier
(``pair_classifiers``, on by default). The repository keeps every trained version; an image
ships only the release set (``models/release.json``, staged by ``fercomp models --release-to``).
Rows, each loaded in a fresh Python process (so peak memory is that repository's alone):

  repository     every artifact under --models (what a checkout or a ./models mount serves)
  release set    the same repository staged to a temporary folder (what the images ship)

    .venv/bin/python -m benchmarks.model_load --threads 1
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import benchmark_parser, finish

COLUMNS = [
    ("repository", "repository"), ("artifacts", "artifacts"), ("codecs_loaded", "codecs loaded"),
    ("classifiers_loaded", "classifiers loaded"),
    ("disk_mb", "on disk MB"), ("load_s", "load s"), ("peak_rss_mb", "peak RSS MB"),
]  # fmt: skip

# Runs in the child: only the registry's start-up, timed from the first import of the service.
_CHILD = """
import json, resource, sys, time
import torch
if int(sys.argv[2]) > 0:
    torch.set_num_threads(int(sys.argv[2]))
from core.artifacts import ModelRepository
from service.registry import ModelRegistry
t0 = time.perf_counter()
registry = ModelRegistry(ModelRepository(sys.argv[1]), pair_classifiers=True)
registry.load_initial("all")
n_clf = sum(m.kind == "classifier" for m, _ in registry.models())
print(json.dumps({"codecs_loaded": len(registry.codecs()), "classifiers_loaded": n_clf,
                  "load_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(root: Path, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    files = [p for p in root.rglob("*") if p.is_file()]
    return json.loads(out.strip().splitlines()[-1]) | {
        "artifacts": sum(1 for p in files if p.name == "manifest.json"),
        "disk_mb": sum(p.stat().st_size for p in files) / 2**20,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from core.artifacts import ModelRepository, bundled_models_dir
    from core.release import stage_release

    p = benchmark_parser("benchmarks.model_load", __doc__)
    p.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    root = args.models or bundled_models_dir()
    rows = [{"repository": "repository"} | measure(root, args.threads)]
    with tempfile.TemporaryDirectory(prefix="fercomp-release-") as tmp:
        stage_release(ModelRepository(root), Path(tmp) / "models")
        rows.append({"repository": "release set"} | measure(Path(tmp) / "models", args.threads))
    return finish("model_load", argv, COLUMNS, rows, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
