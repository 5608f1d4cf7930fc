"""Model artifacts without torch: the manifest, checksums and the repository listing.

Layout: ``<root>/<name>/<version>/{manifest.json, weights.safetensors}`` (codecs may add an
``edge/`` bundle, ``core.edge_bundle``). This is the part of ``core.artifacts`` that reading a
repository needs (the torch-free edge client, ``fercomp models``, staging a release);
``core.artifacts`` re-exports all of it and adds saving and loading the torch models.
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

from pydantic import BaseModel, Field, ValidationError

from core.face_image import DEFAULT_SPEC

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
DEFAULTS = "defaults.json"  # the repository's default codec and classifier
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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


def codec_id_hex_of(sha256_hex: str) -> str:
    """The codec id written in bitstream headers: the first 4 bytes of the weights' sha256
    (``core.codec.codec_id_from_sha256``, as hex)."""
    return bytes.fromhex(sha256_hex)[:4].hex()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_name(value: str, what: str) -> str:
    if not _SAFE_NAME.match(value):
        raise ArtifactError(f"invalid {what} {value!r}: use letters, digits, '.', '_', '-'")
    return value


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
            check_name(p, "model reference part")
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
