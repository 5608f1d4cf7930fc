"""Which encoder a codec artifact gets on the edge: its ONNX bundle, else torch, else an error.

``EdgeCodec`` (``core.edge_codec``: ONNX Runtime + numpy + constriction) encodes exactly like
the torch ``FaceCodec`` and is what the client uses whenever a codec artifact carries an
``edge/`` bundle, which every codec of the release set does (``fercomp export-edge``). An
artifact without one (a codec synced from a server, or trained here and not exported) falls
back to the torch ``FaceCodec`` when torch is installed (``pip install 'fercomp[client]'``);
on the torch-free edge install (``pip install 'fercomp[edge]'``) that is an error saying so.

``FERCOMP_EDGE_THREADS`` sets ONNX Runtime's intra-op threads (default 1: the encode of one
face is too small to share; 0: ONNX Runtime's default, every core).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.edge_codec import EdgeBundleError, EdgeCodec, has_bundle
from core.manifest import ArtifactError, Manifest, read_manifest

__all__ = [
    "EDGE_THREADS_ENV",
    "EdgeBundleError",
    "EdgeCodec",
    "NoEncoderError",
    "edge_threads",
    "load_encoder_codec",
]

EDGE_THREADS_ENV = "FERCOMP_EDGE_THREADS"
#: What the torch fallback needs that the edge install does not have.
TORCH_STACK = frozenset({"torch", "torchvision", "compressai"})


class NoEncoderError(ArtifactError):
    """A codec artifact has no edge bundle and torch is not installed."""


def edge_threads() -> int:
    """ONNX Runtime intra-op threads: ``$FERCOMP_EDGE_THREADS``, default 1."""
    raw = os.environ.get(EDGE_THREADS_ENV, "1")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{EDGE_THREADS_ENV}={raw!r}: expected a number of threads") from None
    if value < 0:
        raise ValueError(f"{EDGE_THREADS_ENV}={raw!r}: expected >= 0")
    return value


def load_encoder_codec(
    art_dir: str | Path, threads: int | None = None, device: str = "cpu"
) -> tuple[Any, Manifest]:
    """(codec, manifest) for encoding with the codec artifact ``art_dir``: an ``EdgeCodec``
    when it has an ``edge/`` bundle (verified: a bundle that does not match is an error, not a
    silent fallback), else the torch ``FaceCodec`` on ``device``, else ``NoEncoderError``."""
    art_dir = Path(art_dir)
    if has_bundle(art_dir):
        codec = EdgeCodec.load(art_dir, edge_threads() if threads is None else threads)
        return codec, codec.manifest
    manifest = read_manifest(art_dir)  # a clear error for a folder that is no artifact
    if manifest.kind != "codec":
        raise ArtifactError(f"{art_dir} is a {manifest.kind} artifact, expected a codec")
    try:
        from client.torch_codec import load_torch_codec
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TORCH_STACK:
            raise
        raise NoEncoderError(
            f"codec {manifest.ref} ({art_dir}) has no edge bundle (edge/) and torch is not "
            f"installed ({e.name or e}): export one with `fercomp export-edge {art_dir}` where "
            "torch is, or install fercomp[client]"
        ) from e
    return load_torch_codec(art_dir, device)
