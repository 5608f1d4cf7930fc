"""Model artifacts: safetensors weights + a JSON manifest, in a versioned repository.

Layout: ``<root>/<name>/<version>/{manifest.json, weights.safetensors}``. Loading verifies the
sha256 of the weights and the architecture before any weight reaches a model, and refuses
mismatches with an ``ArtifactError`` whose message says what is wrong. Never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from core.classifier import ClassifierConfig, FERClassifier
from core.codec import ALIGN_LOG2, CodecConfig, FaceHyperprior, codec_id_from_sha256
from core.face_codec import FaceCodec
from core.preprocess import DEFAULT_SPEC, InputSpec

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
DEFAULTS = "defaults.json"  # the repository's default codec and classifier
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: safetensors metadata key holding a codec's non-default alignment. It is inside the weights
#: file, so the sha256 (and the codec id in every header) tells the same weights at two
#: alignments apart: a server keys its decoders by codec id.
ALIGN_METADATA_KEY = "fercomp.align_log2"


class ArtifactError(ValueError):
    """An artifact is missing, corrupt, or does not match what the caller expects."""


class ArtifactNotFound(ArtifactError):
    """A well-formed reference that names nothing in the repository (a server answers 404)."""


class Manifest(BaseModel):
    name: str
    version: str
    kind: Literal["codec", "classifier"]
    architecture: dict[str, Any]
    input: dict[str, int] = Field(default_factory=DEFAULT_SPEC.to_dict)
    weights_file: str = WEIGHTS
    weights_dtype: Literal["float32", "float16"] = "float32"
    sha256: str
    codec_id: str | None = None  # 8 hex chars, codecs only: the id written in bitstreams
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def paired_classifier(self) -> str | None:
        """The classifier a codec was trained with and should be read by (``NAME/VERSION``):
        recorded by ``fercomp train joint`` (``training.classifier_artifact``) or set by hand
        (``training.paired_classifier``, which wins); None for classifiers and unpaired codecs."""
        if self.kind != "codec":
            return None
        for key in ("paired_classifier", "classifier_artifact"):
            value = self.training.get(key)
            if isinstance(value, str) and value:
                return value
        return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_name(value: str, what: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ArtifactError(f"invalid {what} {value!r}: use letters, digits, '.', '_', '-'")
    return value


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


def read_manifest(art_dir: str | Path) -> Manifest:
    path = Path(art_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {art_dir}: not a model artifact")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValidationError as e:
        raise ArtifactError(f"invalid manifest {path}: {e.errors()[0]['msg']}") from e


def verify_weights(art_dir: Path, m: Manifest) -> Path:
    """The weights file of ``m``, once it is inside ``art_dir`` and matches the manifest sha256."""
    weights = art_dir / m.weights_file
    if weights.parent != art_dir or not weights.is_file():
        raise ArtifactError(f"weights file {m.weights_file!r} missing in {art_dir}")
    digest = sha256_file(weights)
    if digest != m.sha256:
        raise ArtifactError(
            f"checksum mismatch for {weights}: manifest says {m.sha256[:12]}…, "
            f"file is {digest[:12]}… (corrupt or tampered)"
        )
    return weights


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


#: The one name of the model-repository setting: the server's ``models_dir`` setting reads
#: the same variable (pydantic, prefix ``FERCOMP_``), so client, CLI and server agree.
MODELS_DIR_ENV = "FERCOMP_MODELS_DIR"
#: The name before 0.x; still read, with a DeprecationWarning, so old shells keep working.
DEPRECATED_MODELS_ENV = "FERCOMP_MODELS"


def bundled_models_dir() -> Path:
    """The model repository: ``$FERCOMP_MODELS_DIR``, else the ``models/`` fercomp ships."""
    env = os.environ.get(MODELS_DIR_ENV)
    if not env and (env := os.environ.get(DEPRECATED_MODELS_ENV)):
        warnings.warn(
            f"{DEPRECATED_MODELS_ENV} is deprecated; set {MODELS_DIR_ENV} instead",
            DeprecationWarning,
            stacklevel=2,
        )
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


class ModelRepository:
    """A folder of artifacts ``<root>/<name>/<version>/``; paths never escape the root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def list(self, kind: str | None = None) -> list[Manifest]:
        out = []
        for mf in sorted(self.root.glob(f"*/*/{MANIFEST}")):
            try:
                m = read_manifest(mf.parent)
            except ArtifactError:
                continue
            if kind is None or m.kind == kind:
                out.append(m)
        return out

    def path(self, ref: str) -> Path:
        """Resolve ``name/version`` (or ``name`` for its newest version) inside the root."""
        parts = ref.strip("/").split("/")
        if len(parts) not in (1, 2):
            raise ArtifactError(f"model reference {ref!r} must be NAME or NAME/VERSION")
        for p in parts:
            _check_name(p, "model reference part")
        if len(parts) == 1:
            versions = sorted(
                (d for d in (self.root / parts[0]).glob("*") if (d / MANIFEST).is_file()),
                key=lambda d: _version_key(d.name),
            )
            if not versions:
                raise ArtifactNotFound(f"no artifact named {parts[0]!r} in {self.root}")
            target = versions[-1]
        else:
            target = self.root / parts[0] / parts[1]
        target = target.resolve()
        if self.root not in target.parents:
            raise ArtifactError(f"{ref!r} resolves outside the model repository")
        if not (target / MANIFEST).is_file():
            raise ArtifactNotFound(f"no artifact {ref!r} in {self.root}")
        return target

    def defaults(self) -> dict[str, str]:
        """``defaults.json``: which codec and classifier a server/client uses out of the box."""
        f = self.root / DEFAULTS
        if not f.is_file():
            raise ArtifactError(f"no {DEFAULTS} in {self.root}")
        data: dict[str, str] = json.loads(f.read_text())
        return data


def _version_key(v: str) -> tuple[Any, ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._-]", v))
