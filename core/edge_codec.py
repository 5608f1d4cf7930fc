"""The edge encoder without torch: a codec's ``edge/`` bundle run by ONNX Runtime + numpy.

A codec artifact ``<name>/<version>/`` may carry an ``edge/`` folder, written by
``fercomp export-edge`` (``core.edge_export``, the torch side)::

    edge/analysis.onnx        g_a and h_a in one graph: x [B, C, H, W] (padded) -> y, z
    edge/entropy.safetensors  the v2 tables + float64 h_s (core.latent_tables.LatentTables)
    edge/edge.json            format tag, the source weights' sha256, config, each file's
                              sha256, the export's check figures against torch, versions

``EdgeCodec`` encodes faces to format-v2 containers exactly as ``FaceCodec`` does
(``FaceCodec._encode_v2``): replicate-pad to the codec's alignment, analysis transform, then
``z_symbols = round(z - medians)`` (float32), ``z_hat = z_symbols + medians``, the float64
numpy hyper path for the scale indexes and snapped means, ``y_symbols = round(y - means)``
(float64), and constriction's ANS over the integer tables. Only the analysis transform runs
in another runtime; everything that decides the entropy parameters is the code the server's
decoder runs too, so a face encoded here decodes there to exactly the latents meant. (ONNX
Runtime's y and z differ from torch's by a few 1e-6, which can move a symbol that sits on a
rounding boundary: the bitstream is then a different but equally valid encoding of the face;
``edge.json`` records how often that happens.)

Loading refuses a bundle whose files do not hash to what ``edge.json`` says, or whose source
sha256 is not the artifact manifest's (weights re-exported since the bundle was made).

Imports numpy, onnxruntime, safetensors and constriction only: the torch-free client ships it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from core import bitstream
from core.ans_coding import LatentCoder
from core.face_image import InputSpec
from core.latent_tables import TABLES_FILE, Latents, LatentTables, v2_latents
from core.manifest import ArtifactError, Manifest, codec_id_hex_of, read_manifest, sha256_file

EDGE_DIR = "edge"
ANALYSIS_FILE = "analysis.onnx"
BUNDLE_FILE = "edge.json"
BUNDLE_FORMAT = "fercomp-edge/1"
BUNDLE_FILES = (ANALYSIS_FILE, TABLES_FILE)
#: Pixel alignment of a manifest without ``align_log2`` (``core.codec.ALIGN_LOG2``).
DEFAULT_ALIGN_LOG2 = 6
#: Names of the analysis graph's input and outputs.
INPUT_NAME = "x"
OUTPUT_NAMES = ("y", "z")

F32 = NDArray[np.float32]
I32 = NDArray[np.int32]
F64 = NDArray[np.float64]


class EdgeBundleError(ArtifactError):
    """An ``edge/`` bundle is missing, corrupt, or not made from this artifact's weights."""


@dataclass(frozen=True)
class EdgeConfig:
    """The architecture fields the edge needs (a subset of ``core.codec.CodecConfig``)."""

    N: int
    M: int
    in_channels: int
    align_log2: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EdgeConfig:
        if d.get("arch", "mbt2018-mean") != "mbt2018-mean":
            raise EdgeBundleError(f"unsupported codec architecture {d.get('arch')!r}")
        return cls(
            N=int(d["N"]),
            M=int(d["M"]),
            in_channels=int(d["in_channels"]),
            align_log2=int(d.get("align_log2", DEFAULT_ALIGN_LOG2)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": "mbt2018-mean",
            "N": self.N,
            "M": self.M,
            "in_channels": self.in_channels,
            "align_log2": self.align_log2,
        }


def bundle_dir(art_dir: str | Path) -> Path:
    return Path(art_dir) / EDGE_DIR


def has_bundle(art_dir: str | Path) -> bool:
    """Whether a codec artifact carries an edge bundle (it may still fail to verify)."""
    return (bundle_dir(art_dir) / BUNDLE_FILE).is_file()


@dataclass(frozen=True)
class EdgeBundle:
    """A verified ``edge/`` bundle: its files hash to ``edge.json``, made from ``manifest``."""

    art_dir: Path
    manifest: Manifest
    info: dict[str, Any]  # edge.json
    config: EdgeConfig

    @property
    def analysis_path(self) -> Path:
        return bundle_dir(self.art_dir) / ANALYSIS_FILE

    @property
    def tables_path(self) -> Path:
        return bundle_dir(self.art_dir) / TABLES_FILE


def read_bundle(art_dir: str | Path, manifest: Manifest | None = None) -> EdgeBundle:
    """Read and verify the edge bundle of the codec artifact ``art_dir``."""
    art_dir = Path(art_dir)
    m = manifest or read_manifest(art_dir)
    where = bundle_dir(art_dir)
    if m.kind != "codec":
        raise EdgeBundleError(f"{art_dir} is a {m.kind} artifact; only codecs have edge bundles")
    f = where / BUNDLE_FILE
    if not f.is_file():
        raise EdgeBundleError(
            f"no edge bundle in {art_dir} (make one with `fercomp export-edge {art_dir}`)"
        )
    try:
        info = json.loads(f.read_text())
        if not isinstance(info, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise EdgeBundleError(f"{f}: not a JSON object ({e})") from e
    if info.get("format") != BUNDLE_FORMAT:
        raise EdgeBundleError(f"{f}: format {info.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    source = info.get("source") or {}
    if source.get("sha256") != m.sha256:
        raise EdgeBundleError(
            f"the edge bundle of {m.ref} was made from other weights (sha256 "
            f"{str(source.get('sha256'))[:12]}…, the manifest says {m.sha256[:12]}…): "
            f"re-export it with `fercomp export-edge {art_dir}`"
        )
    codec_id = codec_id_hex_of(m.sha256)
    if m.codec_id != codec_id or source.get("codec_id") != codec_id:
        raise EdgeBundleError(f"{f}: codec id does not match the weights' sha256 {codec_id}")
    files = info.get("files") or {}
    for name in BUNDLE_FILES:
        entry = files.get(name) or {}
        path = where / name
        if not path.is_file():
            raise EdgeBundleError(f"edge bundle of {m.ref}: {name} is missing")
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            raise EdgeBundleError(
                f"checksum mismatch for {path}: edge.json says "
                f"{str(entry.get('sha256'))[:12]}…, file is {digest[:12]}… (corrupt or tampered)"
            )
    try:
        config = EdgeConfig.from_dict(info["config"])
        declared = EdgeConfig.from_dict(m.architecture)
    except (KeyError, TypeError, ValueError) as e:
        raise EdgeBundleError(f"{f}: bad codec config ({e})") from e
    if config != declared:
        raise EdgeBundleError(f"{f}: config {config} differs from the manifest's {declared}")
    return EdgeBundle(art_dir=art_dir, manifest=m, info=info, config=config)


# -- the numpy half of the v2 encoder (shared with the export's check) -----------------------
def pad_replicate(x: F32, align_log2: int) -> F32:
    """Replicate-pad H and W up to a multiple of 2**align_log2 (``core.codec.pad_to_alignment``)."""
    a = 1 << align_log2
    h, w = x.shape[-2:]
    ph, pw = (a - h % a) % a, (a - w % a) % a
    if ph == 0 and pw == 0:
        return x
    out: F32 = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
    return out


class EdgeCodec:
    """Encodes faces [B, C, H, W] in [0, 1] to format-v2 containers without torch."""

    def __init__(self, bundle: EdgeBundle, threads: int = 1) -> None:
        """``threads``: ONNX Runtime's intra-op threads (1: an edge box's one core; 0: ORT's
        default, all cores)."""
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.config = bundle.config
        self.codec_id = bytes.fromhex(codec_id_hex_of(bundle.manifest.sha256))
        self.spec = InputSpec(**bundle.manifest.input)
        try:
            self.tables = LatentTables.load(bundle.tables_path)
        except (ValueError, KeyError, OSError) as e:
            raise EdgeBundleError(f"{bundle.tables_path}: {e}") from e
        if (self.tables.N, self.tables.M) != (self.config.N, self.config.M):
            raise EdgeBundleError(f"{bundle.tables_path}: tables for another N/M")
        self._coder = LatentCoder(self.tables)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(bundle.analysis_path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EdgeBundleError(f"{bundle.analysis_path}: cannot load ({e})") from e
        names = tuple(o.name for o in self._session.get_outputs())
        if names != OUTPUT_NAMES or self._session.get_inputs()[0].name != INPUT_NAME:
            raise EdgeBundleError(f"{bundle.analysis_path}: expected x -> y, z, got {names}")

    @classmethod
    def load(cls, art_dir: str | Path, threads: int = 1) -> EdgeCodec:
        """The edge codec of a codec artifact folder (its bundle verified first)."""
        return cls(read_bundle(art_dir), threads)

    @property
    def codec_id_hex(self) -> str:
        return self.codec_id.hex()

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def align_log2(self) -> int:
        return self.config.align_log2

    def _check(self, images: NDArray[Any]) -> F32:
        x = np.asarray(images, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, H, W] images, got {x.shape}")
        return x

    def analyse(self, images: NDArray[Any]) -> tuple[F32, F32]:
        """(y, z) of images [B, C, H, W] in [0, 1]: clamp, pad, the ONNX analysis transform."""
        x = pad_replicate(np.clip(self._check(images), 0.0, 1.0), self.align_log2)
        y, z = self._session.run(None, {INPUT_NAME: np.ascontiguousarray(x)})
        return y, z

    def encode_latents(self, images: NDArray[Any]) -> tuple[list[bytes], Latents]:
        """One v2 container per image, and the latents they carry (``Latents.y_hat`` is what
        the server's ``FaceCodec.decode_latents`` must return)."""
        x = self._check(images)
        if len(x) == 0:
            raise ValueError("nothing to encode: an empty batch")
        y, z = self.analyse(x)
        return self.encode_analysed(y, z, (x.shape[-2], x.shape[-1]))

    def encode_analysed(
        self, y: NDArray[Any], z: NDArray[Any], size: tuple[int, int]
    ) -> tuple[list[bytes], Latents]:
        """The entropy half of ``encode_latents``: containers for the analysis outputs y, z of
        images of ``size`` (H, W) before padding."""
        lat = v2_latents(self.tables, y, z)
        header = bitstream.Header(
            codec_id=self.codec_id,
            channels=self.in_channels,
            height=size[0],
            width=size[1],
            align_log2=self.align_log2,
            version=bitstream.FORMAT_V2,
        )
        out = []
        for i in range(len(y)):
            s = self._coder.encode(lat.z_symbols[i], lat.y_symbols[i], lat.indexes[i])
            out.append(bitstream.pack(bitstream.Container(header=header, strings=(s,))))
        return out, lat

    def encode(self, images: NDArray[Any]) -> list[bytes]:
        """Encode a batch [B, C, H, W] of images in [0, 1] to one v2 container per image."""
        return self.encode_latents(images)[0]
