"""Model artifacts: safetensors weights + a JSON manifest, in a versioned repository.

Layout: ``<root>/<name>/<version>/{manifest.json, weights.safetensors}``. Loading verifies the
sha256 of the weights and the architecture before any weight reaches a model, and refuses
mismatches with an ``ArtifactError`` whose message says what is wrong. Never pickle.

The manifest, checksums and the repository listing live in ``core.manifest`` (no torch: the
edge client reads repositories too) and are re-exported here, so ``from core.artifacts import
Manifest`` keeps working; this module adds saving and loading the torch models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from core.classifier import ClassifierConfig, FERClassifier
from core.codec import ALIGN_LOG2, CodecConfig, FaceHyperprior, codec_id_from_sha256
from core.face_codec import FaceCodec
from core.manifest import (
    DEFAULTS,
    DEPRECATED_MODELS_ENV,
    MANIFEST,
    MODELS_DIR_ENV,
    WEIGHTS,
    ArtifactError,
    ArtifactNotFound,
    Manifest,
    ModelRepository,
    bundled_models_dir,
    read_manifest,
    sha256_file,
    verify_weights,
)
from core.manifest import check_name as _check_name
from core.preprocess import DEFAULT_SPEC, InputSpec

__all__ = [
    "ALIGN_METADATA_KEY",
    "DEFAULTS",
    "DEPRECATED_MODELS_ENV",
    "MANIFEST",
    "MODELS_DIR_ENV",
    "WEIGHTS",
    "ArtifactError",
    "ArtifactNotFound",
    "Manifest",
    "ModelRepository",
    "bundled_models_dir",
    "load_classifier",
    "load_codec",
    "load_codec_model",
    "read_manifest",
    "save_classifier",
    "save_codec",
    "sha256_file",
    "verify_weights",
]

#: safetensors metadata key holding a codec's non-default alignment. It is inside the weights
#: file, so the sha256 (and the codec id in every header) tells the same weights at two
#: alignments apart: a server keys its decoders by codec id.
ALIGN_METADATA_KEY = "fercomp.align_log2"


def _write(
    state: dict[str, torch.Tensor],
    out_dir: Path,
    manifest_fields: dict[str, Any],
    metadata: dict[str, str] | None = None,
) -> Manifest:
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS
    tmp = weights.with_suffix(".tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(tensors, str(tmp), metadata=metadata or None)
    # safetensors creates the file owner-only (0600): a server image running as another user
    # (deploy/Dockerfile: uid 10001) could not read an artifact exported by root. Artifacts
    # are published files, like the manifest beside them.
    os.chmod(tmp, 0o644)
    os.replace(tmp, weights)  # atomic: a reader never sees half a file
    manifest = Manifest(sha256=sha256_file(weights), **manifest_fields)
    if manifest.kind == "codec":
        manifest.codec_id = codec_id_from_sha256(manifest.sha256).hex()
    (out_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def save_codec(
    model: FaceHyperprior,
    out_dir: str | Path,
    name: str,
    version: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    spec: InputSpec = DEFAULT_SPEC,
    half: bool = True,
) -> Manifest:
    """Export a codec. Entropy-coder tables are rebuilt first and shipped with the weights so
    encoder and decoder use identical CDFs.

    With ``half`` the transforms (g_a, g_s, h_a, h_s) are stored as float16, halving the file;
    the entropy models stay float32. Both sides load the same rounded weights, so decoding
    stays exact; only the reconstruction quality moves, by far less than a λ step.
    """
    model.update(force=True)
    state = {
        k: (v.half() if half and v.is_floating_point() and not _is_entropy_model(k) else v)
        for k, v in model.state_dict().items()
    }
    align = model.config.align_log2
    # Default alignment: no metadata, so such files stay byte-identical to earlier exports.
    metadata = {ALIGN_METADATA_KEY: str(align)} if align != ALIGN_LOG2 else None
    fields = _manifest_fields("codec", name, version, model.config.to_dict(), spec, half)
    return _write(state, Path(out_dir), fields | _records(training, metrics), metadata)


def _manifest_fields(
    kind: str, name: str, version: str, architecture: dict[str, Any], spec: InputSpec, half: bool
) -> dict[str, Any]:
    return dict(
        name=_check_name(name, "name"),
        version=_check_name(version, "version"),
        kind=kind,
        architecture=architecture,
        input=spec.to_dict(),
        weights_dtype="float16" if half else "float32",
    )


def _records(training: dict[str, Any] | None, metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {"training": training or {}, "metrics": metrics or {}}


def _is_entropy_model(key: str) -> bool:
    return key.startswith(("entropy_bottleneck.", "gaussian_conditional."))


def save_classifier(
    model: FERClassifier,
    out_dir: str | Path,
    name: str,
    version: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    spec: InputSpec = DEFAULT_SPEC,
    half: bool = True,
) -> Manifest:
    """Export a classifier; float16 storage halves the file at no measurable accuracy cost."""
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    fields = _manifest_fields("classifier", name, version, model.config.to_dict(), spec, half)
    return _write(state, Path(out_dir), fields | _records(training, metrics))


def _verified_state(art_dir: Path, expected_kind: str) -> tuple[Manifest, dict[str, torch.Tensor]]:
    m = read_manifest(art_dir)
    if m.kind != expected_kind:
        raise ArtifactError(f"{art_dir} is a {m.kind} artifact, expected a {expected_kind}")
    weights = verify_weights(art_dir, m)
    state = load_file(str(weights))
    return m, {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], art_dir: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise ArtifactError(f"weights in {art_dir} do not match the architecture: {first}") from e


def load_codec_model(art_dir: str | Path) -> tuple[FaceHyperprior, Manifest]:
    art_dir = Path(art_dir)
    m, state = _verified_state(art_dir, "codec")
    try:
        model = FaceHyperprior(CodecConfig.from_dict(m.architecture))
    except (KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"bad codec architecture in {art_dir}: {e}") from e
    _load_into(model, state, art_dir)
    if m.codec_id != codec_id_from_sha256(m.sha256).hex():
        raise ArtifactError(f"codec_id in {art_dir} does not match its sha256")
    _check_alignment(art_dir / m.weights_file, model.config.align_log2, art_dir)
    return model.eval(), m


def _check_alignment(weights: Path, align_log2: int, art_dir: Path) -> None:
    """The manifest's alignment must be the one sealed in the weights file (and codec id)."""
    with safe_open(str(weights), framework="pt") as f:
        stored = (f.metadata() or {}).get(ALIGN_METADATA_KEY, str(ALIGN_LOG2))
    if stored != str(align_log2):
        raise ArtifactError(
            f"codec in {art_dir}: manifest says align_log2 {align_log2}, its weights file was "
            f"exported for align_log2 {stored}"
        )


def load_codec(
    art_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[FaceCodec, Manifest]:
    model, m = load_codec_model(art_dir)
    return FaceCodec(model, codec_id_from_sha256(m.sha256), device=device), m


def load_classifier(
    art_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[FERClassifier, Manifest]:
    art_dir = Path(art_dir)
    m, state = _verified_state(art_dir, "classifier")
    try:
        model = FERClassifier(ClassifierConfig.from_dict(m.architecture))
    except (KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"bad classifier architecture in {art_dir}: {e}") from e
    _load_into(model, state, art_dir)
    return model.to(device).eval(), m
