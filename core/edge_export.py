"""Export a codec artifact's edge bundle (``edge/``) and check it against torch.

``fercomp export-edge`` writes, into the artifact folder (layout: ``core.edge_codec``):

* ``analysis.onnx``: g_a and h_a as one ONNX graph, x [B, C, H, W] (already padded) -> y, z.
  CompressAI's GDN reparametrises beta and gamma through a custom autograd ``LowerBound`` that
  ONNX cannot express; the exported module computes the same ``x * rsqrt(conv(x², gamma) +
  beta)`` with the effective beta and gamma precomputed. Every weight that is exactly a float16
  (all of the artifact's transforms: they are stored as float16) is a float16 initializer
  followed by a ``Cast`` to float32, which halves the file and changes no value; the effective
  GDN parameters, computed in float32, stay float32.
* ``entropy.safetensors``: ``latent_tables_of(model)`` (``LatentTables``), with each float64
  array stored in the narrowest float type that holds it exactly (h_s's weights are float16
  values); ``LatentTables.load`` reads them back as float64, equal bit for bit.
* ``edge.json``: the format tag, the source weights' sha256 and codec id, the config, each
  file's sha256, the check figures below, the opset and the library versions.

The check runs the bundle through ``EdgeCodec`` (what the client runs) and the artifact through
``FaceCodec`` (torch) on the same faces: the largest |difference| of y and z, the fraction of
faces whose quantised symbols (z and y) are identical, container bytes both ways, and that the
server's decoder (``FaceCodec.decode_latents``) returns exactly the latents the edge coded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from compressai.layers import GDN
from numpy.typing import NDArray
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from torch import Tensor, nn

from core import bitstream
from core.artifacts import load_codec
from core.codec import FaceHyperprior, pad_to_alignment
from core.edge_codec import (
    ANALYSIS_FILE,
    BUNDLE_FILE,
    BUNDLE_FILES,
    BUNDLE_FORMAT,
    EDGE_DIR,
    INPUT_NAME,
    OUTPUT_NAMES,
    EdgeCodec,
    EdgeConfig,
)
from core.face_codec import FaceCodec, latent_tables_of
from core.latent_tables import TABLES_FILE, LatentTables, v2_latents
from core.manifest import Manifest, sha256_file

OPSET = 17
#: Faces per batch in the check (torch and ONNX Runtime alike).
CHECK_BATCH = 256


class _PlainGDN(nn.Module):
    """GDN with its effective beta and gamma as constants: the same forward, exportable."""

    beta: Tensor
    gamma: Tensor

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        with torch.no_grad():
            beta = gdn.beta_reparam(gdn.beta).detach().clone()
            c = beta.shape[0]
            gamma = gdn.gamma_reparam(gdn.gamma).detach().reshape(c, c, 1, 1).clone()
        self.inverse = gdn.inverse
        self.register_buffer("beta", beta)
        self.register_buffer("gamma", gamma)

    def forward(self, x: Tensor) -> Tensor:
        norm = F.conv2d(x * x, self.gamma, self.beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def _plain(seq: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(_PlainGDN(m) if isinstance(m, GDN) else m for m in seq))


class AnalysisModule(nn.Module):
    """g_a then h_a of a codec, in one forward: x (padded) -> (y, z)."""

    def __init__(self, model: FaceHyperprior) -> None:
        super().__init__()
        self.g_a = _plain(model.g_a)
        self.h_a = _plain(model.h_a)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.g_a(x)
        return y, self.h_a(y)


def export_analysis_onnx(model: FaceHyperprior, opset: int = OPSET) -> bytes:
    """The analysis graph as ONNX bytes (float16 initializers where exact, see above)."""
    import onnx

    module = AnalysisModule(model).eval().float()
    c = model.config.in_channels
    example = torch.rand(1, c, 1 << model.config.align_log2, 1 << model.config.align_log2)
    with (
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        path = Path(tmp) / ANALYSIS_FILE
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                "y": {0: "batch", 2: "y_height", 3: "y_width"},
                "z": {0: "batch", 2: "z_height", 3: "z_width"},
            },
        )
        proto = onnx.load(str(path))
    _half_initializers(proto)
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def _half_initializers(proto: Any) -> None:
    """Store each float32 initializer that is exactly a float16 as float16 + a Cast node."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), arr):
            continue
        name = init.name
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, f"{name}.fp16"))
        casts.append(
            helper.make_node(
                "Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT, name=f"{name}.cast"
            )
        )
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def save_tables(tables: LatentTables, path: Path) -> None:
    """``tables.save(path)`` with each float64 array in the narrowest exact float type, and
    the header's metadata in sorted order (safetensors writes it in hash order), so that the
    same codec always gives the same file."""
    tables.save(path)
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
    arrays = load_file(str(path))
    for key, a in arrays.items():
        if a.dtype == np.float64:
            for dtype in (np.float16, np.float32):
                if np.array_equal(a.astype(dtype).astype(np.float64), a):
                    arrays[key] = a.astype(dtype)
                    break
    save_file(arrays, str(path), meta)
    _sort_metadata(path)


def _sort_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its ``__metadata__`` keys sorted (same length)."""
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > n:  # not the compact JSON safetensors writes: leave the file as it is
        return
    data[8 : 8 + n] = text + b" " * (n - len(text))
    path.write_bytes(bytes(data))


# -- check faces -----------------------------------------------------------------------------
def check_faces(
    data: Path | None, limit: int = 0, seed: int = 0
) -> tuple[NDArray[np.float32], str]:
    """Faces [n, 1, 48, 48] in [0, 1] for the check: FER2013 PublicTest from ``data`` (all of
    it, or the first ``limit``), else ``limit or 256`` smooth random images (no data here)."""
    if data is not None and Path(data).is_file():
        with np.load(data, allow_pickle=False) as z:
            images, split = z["images"], z["split"]
        rows = np.flatnonzero(split == "PublicTest")
        if limit:
            rows = rows[:limit]
        faces = images[rows].astype(np.float32)[:, None] / np.float32(255.0)
        return faces, f"{len(faces)} FER2013 PublicTest faces ({Path(data).name})"
    from PIL import Image

    n = limit or 256
    rng = np.random.default_rng(seed)
    coarse = (rng.random((n, 6, 6)) * 255).astype(np.uint8)
    smooth = [
        np.asarray(Image.fromarray(c).resize((48, 48), Image.Resampling.BICUBIC), np.float32)
        for c in coarse
    ]
    faces = np.stack(smooth)[:, None] / np.float32(255.0)
    return faces, f"{n} smooth random 48x48 images (no FER2013 archive given)"


@dataclass
class _Tally:
    faces: int = 0
    y_diff: float = 0.0
    z_diff: float = 0.0
    same_symbols: int = 0
    torch_bytes: int = 0
    edge_bytes: int = 0
    decode_mismatches: int = 0


def check_bundle(
    codec: FaceCodec, edge: EdgeCodec, faces: NDArray[np.float32], source: str
) -> dict[str, Any]:
    """The check figures of ``edge.json`` (module docstring) on ``faces``."""
    t = _Tally()
    model = codec.model
    for start in range(0, len(faces), CHECK_BATCH):
        batch = faces[start : start + CHECK_BATCH]
        x = torch.from_numpy(batch)
        with torch.no_grad():
            y_t = model.g_a(pad_to_alignment(x.clamp(0, 1), model.config.align_log2))
            z_t = model.h_a(y_t)
        y_e, z_e = edge.analyse(batch)
        t.y_diff = max(t.y_diff, float(np.abs(y_e - y_t.numpy()).max()))
        t.z_diff = max(t.z_diff, float(np.abs(z_e - z_t.numpy()).max()))
        lat_t = v2_latents(edge.tables, y_t.numpy(), z_t.numpy())
        payloads, lat_e = edge.encode_latents(batch)
        same = (lat_t.z_symbols == lat_e.z_symbols).all(axis=(1, 2, 3)) & (
            lat_t.y_symbols == lat_e.y_symbols
        ).all(axis=(1, 2, 3))
        t.same_symbols += int(same.sum())
        t.torch_bytes += sum(len(p) for p in codec.encode(x))
        t.edge_bytes += sum(len(p) for p in payloads)
        # What the server decodes from the edge's containers is what the edge coded.
        decoded = codec.decode_latents([codec.parse(p) for p in payloads]).double().numpy()
        t.decode_mismatches += int((decoded != lat_e.y_hat).any(axis=(1, 2, 3)).sum())
        t.faces += len(batch)
    return {
        "faces": t.faces,
        "face_source": source,
        "y_max_abs_diff": t.y_diff,
        "z_max_abs_diff": t.z_diff,
        "symbols_match_fraction": t.same_symbols / t.faces,
        "faces_with_other_symbols": t.faces - t.same_symbols,
        "bytes_per_face_torch": t.torch_bytes / t.faces,
        "bytes_per_face_edge": t.edge_bytes / t.faces,
        "bytes_ratio_edge_to_torch": t.edge_bytes / t.torch_bytes,
        "decode_mismatches": t.decode_mismatches,
        "format_version": bitstream.FORMAT_V2,
        "onnxruntime_threads": 1,
    }


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "onnx", "onnxruntime", "compressai", "constriction", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def export_edge(
    art_dir: str | Path,
    faces: NDArray[np.float32] | None = None,
    face_source: str = "",
    opset: int = OPSET,
) -> dict[str, Any]:
    """Write ``art_dir/edge/`` for a codec artifact, check it, and return its ``edge.json``.

    The bundle is built in a temporary folder beside ``edge/`` and replaces it only once it
    loads and checks: a failed export leaves the previous bundle (or none) in place.
    """
    art_dir = Path(art_dir)
    codec, manifest = load_codec(art_dir)
    if faces is None:
        faces, face_source = check_faces(None)
    work = Path(tempfile.mkdtemp(prefix=f".{EDGE_DIR}.partial-", dir=art_dir))
    try:
        info = _write_bundle(codec, manifest, work, opset)
        # Checked through the loader the client uses, at the final layout.
        staged = art_dir / EDGE_DIR
        old = art_dir / f".{EDGE_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        if staged.exists():
            staged.rename(old)
        work.rename(staged)
        try:
            edge = EdgeCodec.load(art_dir, threads=1)
            info["check"] = check_bundle(codec, edge, faces, face_source)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            if old.exists():
                old.rename(staged)
            raise
        shutil.rmtree(old, ignore_errors=True)
        _write_json(staged / BUNDLE_FILE, info)
        return info
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_bundle(codec: FaceCodec, manifest: Manifest, out: Path, opset: int) -> dict[str, Any]:
    out.chmod(0o755)  # mkdtemp makes it 0700; an image's non-root client must read it
    model = codec.model
    (out / ANALYSIS_FILE).write_bytes(export_analysis_onnx(model, opset))
    save_tables(latent_tables_of(model), out / TABLES_FILE)
    for name in BUNDLE_FILES:
        os.chmod(out / name, 0o644)  # safetensors writes 0600; artifacts are published files
    cfg = model.config
    info: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "source": {
            "name": manifest.name,
            "version": manifest.version,
            "codec_id": manifest.codec_id,
            "sha256": manifest.sha256,
            "weights_dtype": manifest.weights_dtype,
        },
        "config": EdgeConfig(cfg.N, cfg.M, cfg.in_channels, cfg.align_log2).to_dict(),
        "input": manifest.input,
        "files": {
            name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
            for name in BUNDLE_FILES
        },
        "analysis": {
            "opset": opset,
            "input": f"{INPUT_NAME} [B, C, H, W] float32 in [0, 1], replicate-padded to a "
            f"multiple of {1 << cfg.align_log2}",
            "outputs": list(OUTPUT_NAMES),
            "initializers": "float16 where exact (+ Cast), else float32",
        },
        "check": {},
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(out / BUNDLE_FILE, info)
    return info


def _write_json(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
