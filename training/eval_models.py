"""Resolving the models an evaluation uses: devices, artifact specs, families, paired classifiers.

An artifact spec is either an artifact folder (it holds ``manifest.json``) or a ``NAME[/VERSION]``
reference into a model repository. A jointly trained codec has a *paired* classifier (the one
trained with it): given by ``--pair CODEC=CLASSIFIER`` or recorded by ``fercomp train joint`` in
the codec manifest (``training.classifier_artifact``), and looked up next to the codec first,
since the trainer exports both into the same folder tree.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from core.artifacts import ArtifactError, Manifest, ModelRepository, load_classifier, load_codec
from core.classifier import FERClassifier
from core.face_codec import FaceCodec


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)")
    return torch.device(name)


def resolve_artifact(spec: str, repo: ModelRepository | None) -> Path:
    """An artifact folder (has manifest.json) or a ``name[/version]`` ref in the repository."""
    p = Path(spec)
    if (p / "manifest.json").is_file():
        return p
    if repo is None:
        raise ArtifactError(f"{spec!r} is not an artifact folder (no manifest.json)")
    return repo.path(spec)


def family_of(m: Manifest, overrides: dict[str, str]) -> str:
    """Curve a learned codec belongs to: --family, else the manifest's training "family",
    "stage" or "trainer" (``fercomp train`` records codec | finetune | joint), else the artifact
    name up to its first '-' or '_' (e.g. ``joint-l0.1`` -> joint)."""
    for key in (m.ref, m.name):
        if key in overrides:
            return overrides[key]
    for key in ("family", "stage", "trainer"):
        if isinstance(m.training.get(key), str) and m.training[key]:
            return str(m.training[key])
    return m.name.replace("_", "-").split("-")[0] or m.name


def load_classifiers(
    specs: list[str], repo: ModelRepository | None, device: torch.device
) -> dict[str, FERClassifier]:
    """ref -> model, in the order given (duplicates loaded once)."""
    out: dict[str, FERClassifier] = {}
    for spec in specs:
        model, m = load_classifier(resolve_artifact(spec, repo), device)
        out.setdefault(m.ref, model)
    return out


def paired_spec(spec: str, m: Manifest, pairs: dict[str, str]) -> tuple[str | None, bool]:
    """(classifier spec, explicit?) for a codec: --pair first, then its manifest."""
    for key in (spec, m.ref, m.name):
        if key in pairs:
            return pairs[key], True
    return m.paired_classifier, False


def load_codec_with_pair(
    spec: str, repo: ModelRepository | None, device: torch.device, pairs: dict[str, str]
) -> tuple[FaceCodec, Manifest, dict[str, FERClassifier]]:
    """The codec, its manifest and {ref: paired classifier} (empty when it has none).

    A pair asked for with --pair must load; one merely named in a manifest (whose classifier
    may not have been copied along) only warns when missing.
    """
    art_dir = resolve_artifact(spec, repo)
    codec, m = load_codec(art_dir, device)
    pair, explicit = paired_spec(spec, m, pairs)
    if pair is None:
        return codec, m, {}
    roots = [ModelRepository(art_dir.resolve().parents[1])] + ([repo] if repo else [])
    error: Exception | None = None
    for root in roots:
        try:
            return codec, m, load_classifiers([pair], root, device)
        except (ArtifactError, OSError) as e:
            error = e  # the last root tried (the user's repository) says the most
    if explicit:
        raise ArtifactError(f"paired classifier {pair!r} for {m.ref}: {error}")
    warnings.warn(f"{m.ref}: paired classifier {pair!r} not loaded: {error}", stacklevel=2)
    return codec, m, {}
