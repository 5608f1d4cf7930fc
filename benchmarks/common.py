"""Shared by the benchmark scripts: the faces to measure on, timing statistics, output.

Faces come from (in order of preference) an ``.npz`` the user passes, the Grace Hopper photo that
ships with matplotlib (the same photo ``make demo`` uses), or smooth random images. No dataset
is shipped or downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps, features
from torch import Tensor

from core.artifacts import MANIFEST, ModelRepository, bundled_models_dir
from core.openmp import OPENMP_WAIT
from core.preprocess import face_to_tensor

FACE_SIDE = 48
# OpenMP wait settings compared in child processes (libgomp reads them once, at load). The
# default spelled out (libgomp's own count) also keeps core/openmp.py from setting its own.
OPENMP_WAITS = {"libgomp default": {"GOMP_SPINCOUNT": "300000"}, "active, 300000": OPENMP_WAIT}
# Face box (x, y, w, h) that client.faces' Haar cascade finds in grace_hopper.jpg; fixed here
# so the benchmark does not need OpenCV just to find the same face every run.
HOPPER_FACE_BOX = (110, 60, 311, 311)


def load_faces(n: int, data: Path | None = None, seed: int = 0) -> tuple[Tensor, str]:
    """``n`` model inputs [n, 1, 48, 48] in [0, 1], and a line saying where they came from."""
    rng = np.random.default_rng(seed)
    if data is not None:
        return _npz_faces(data, n)
    photo = _hopper_photo()
    if photo is not None:
        faces = torch.stack([face_to_tensor(_jittered_crop(photo, rng)) for _ in range(n)])
        return faces, f"{n} jittered crops of matplotlib's grace_hopper.jpg"
    # Low-frequency noise compresses like a face far more than white noise would.
    coarse = rng.random((n, 1, 6, 6)).astype(np.float32)
    faces = torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(FACE_SIDE, FACE_SIDE), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    return faces, f"{n} smooth random images (matplotlib sample photo not available)"


def _npz_faces(path: Path, n: int) -> tuple[Tensor, str]:
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        where = ""
        if "split" in z:  # like fer2013.npz: prefer held-out rows
            test = np.flatnonzero(z["split"] != "Training")
            if len(test):
                images, where = images[test], " (non-Training rows)"
    images = images[:n]
    if len(images) == 0:
        raise ValueError(f"{path} has no images")
    faces = torch.stack([face_to_tensor(np.asarray(im, np.uint8)) for im in images])
    return faces, f"{len(faces)} faces from {path}{where}"


def _hopper_photo() -> Image.Image | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return Image.open(path).convert("RGB") if path.is_file() else None


def _jittered_crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A plausible face crop: shifted/scaled box, sometimes mirrored, brighter or darker."""
    x, y, w, _ = HOPPER_FACE_BOX
    side = w * rng.uniform(0.85, 1.15)
    cx = x + w / 2 + rng.uniform(-0.08, 0.08) * w
    cy = y + w / 2 + rng.uniform(-0.08, 0.08) * w
    box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    im = photo.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC).crop(box)
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    return ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))


# -- standard codecs, the same settings as client.bandwidth --------------------------------
def pil_encode(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    """One uint8 (H, W) face as a JPEG or WebP file (WebP with method=6, like the meter)."""
    buf = io.BytesIO()
    extra = {"method": 6} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(buf, format=fmt, quality=quality, **extra)
    return buf.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"))


def webp_available() -> bool:
    return bool(features.check("webp"))


# -- statistics and output ------------------------------------------------------------------
def ms_stats(seconds: Sequence[float], percentiles: Sequence[int] = (50, 90)) -> dict[str, float]:
    """Percentiles of a list of durations, in milliseconds (``p50_ms``, ``p90_ms``, ...)."""
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    return {f"p{p}_ms": float(np.percentile(values, p)) for p in percentiles}


def mean_size(blobs: Sequence[bytes]) -> float:
    """Average bytes per face: what goes over the wire for each one."""
    return float(np.mean([len(b) for b in blobs]))


def throughput(n: int, elapsed: float, latencies: Sequence[float]) -> dict[str, float]:
    """Faces per second over the whole run, and the p50/p99/max of its latencies."""
    stats = ms_stats(latencies, (50, 99, 100))
    stats["max_ms"] = stats.pop("p100_ms")
    return {"faces": n, "seconds": elapsed, "faces_per_s": n / elapsed, **stats}


def run_batches(fn: Callable[[list[Any]], None], items: list[Any], batch: int) -> dict[str, float]:
    """``fn`` on consecutive chunks of ``batch`` items (one untimed warm-up chunk first);
    latencies are per chunk."""
    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
    fn(chunks[0])  # warm-up
    times = []
    t0 = time.perf_counter()
    for chunk in chunks:
        t1 = time.perf_counter()
        fn(chunk)
        times.append(time.perf_counter() - t1)
    return throughput(len(items), time.perf_counter() - t0, times)


def machine() -> dict[str, Any]:
    """What the figures depend on, recorded next to them."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def format_table(columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table; ``columns`` are (row key, header). Floats get ~3 significant digits."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):  # about 3 significant digits, never scientific notation
            digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2 if abs(v) >= 1 else 3
            return f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


def openmp_child_env(wait: str) -> dict[str, str]:
    """This process's environment for a child process in OpenMP ``wait`` (``OPENMP_WAITS``)."""
    base = {k: v for k, v in os.environ.items() if k not in OPENMP_WAIT}
    return base | OPENMP_WAITS[wait]


def run_child(module: str, args: Sequence[str], env: dict[str, str] | None = None) -> Any:
    """``python -m module *args --json PATH`` in a child process (its stdout dropped, a failure
    raises); the JSON it wrote to PATH."""
    with tempfile.TemporaryDirectory(prefix="fercomp-child-") as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, "-m", module, *args, "--json", str(out)]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def benchmark_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser every ``python -m benchmarks.<name>`` script starts from: its docstring is
    the help text, kept as written (the tables and commands in it must not be re-wrapped)."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_common_args(p: argparse.ArgumentParser, faces: int, quality: bool = True) -> None:
    """Options the benchmark scripts share; ``quality`` only where JPEG/WebP are measured."""
    p.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    p.add_argument("--faces", type=int, default=faces, help=f"faces to measure (default {faces})")
    p.add_argument("--data", type=Path, default=None, help=".npz: uint8 `images`, opt. `split`")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    if quality:
        p.add_argument("--quality", type=int, default=30, help="JPEG/WebP quality (default 30)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write JSON here")


def write_json(path: Path | None, doc: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")


def finish(
    benchmark: str,
    argv: Sequence[str] | None,
    columns: Sequence[tuple[str, str]],
    rows: list[dict[str, Any]],
    json_path: Path | None,
    after: str = "",
    **fields: Any,
) -> int:
    """Print the rows as a table (then ``after``, if any) and write them, with argv, the
    machine and ``fields``, to ``json_path``."""
    print(format_table(columns, rows))
    if after:
        print(after)
    doc = {"benchmark": benchmark, "argv": list(sys.argv[1:] if argv is None else argv)}
    write_json(json_path, doc | fields | {"rows": rows, "machine": machine()})
    return 0


def add_codec_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--codec",
        action="append",
        default=[],
        metavar="ART",
        help="codec artifact dir or NAME/VERSION in --models; repeatable (default: the "
        "repository's default codec)",
    )


def codec_dirs(refs: Sequence[str], models: Path | None) -> list[Path]:
    """``--codec`` values as artifact directories: a directory as given, else ``name/version``
    in the model repository; none given: the repository's default codec."""
    repo = ModelRepository(models or bundled_models_dir())
    return [
        Path(ref) if (Path(ref) / MANIFEST).is_file() else repo.path(ref)
        for ref in refs or [repo.defaults()["codec"]]
    ]


ROOT = Path(__file__).resolve().parents[1]


def load_split(path: Path, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 faces and int64 labels of one split of a fer2013.npz-like archive (the first
    ``limit`` rows when ``limit`` > 0)."""
    with np.load(path, allow_pickle=False) as z:
        rows = np.flatnonzero(z["split"] == split)
        if limit > 0:
            rows = rows[:limit]
        return z["images"][rows], z["labels"][rows].astype(np.int64)


def serve_process(
    db: Path, device: str, models: Path, settings: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``fercomp serve`` as a child on free loopback ports (FERCOMP_* settings: ``settings``
    only, not the caller's), once it logged its ports: (process, that JSON record)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERCOMP_")} | (settings or {})
    cmd = [sys.executable, "-m", "cli.main", "serve", "--grpc-port", "0", "--http-port", "0",
           "--db", str(db), "--device", device, "--models", str(models)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("{") and "grpc_port" in (rec := json.loads(line)):
            # Keep draining stderr (one JSON line per request) so the server never blocks on it.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, rec
    raise RuntimeError(f"server exited with {proc.wait()}")


@contextmanager
def local_server(models: Path, db: Path) -> Iterator[str]:
    """A real ``Server`` in this process on free loopback ports over ``models``, stopped on exit;
    yields its gRPC target (``host:port``)."""
    from service.app import Server  # lazy: most benchmarks never start one
    from service.settings import Settings

    server = Server(
        Settings(host="127.0.0.1", grpc_port=0, http_port=0, models_dir=models, db_path=db,
                 log_level="WARNING")
    )  # fmt: skip
    server.start()
    try:
        assert server.ports is not None
        yield f"127.0.0.1:{server.ports.grpc}"
    finally:
        server.stop(grace=5.0)
