"""Which codecs rate control chooses from: the release set's *operating points*.

A byte target (``--target-bytes``) or a bandwidth budget (``--budget-bps``) needs several codecs
to choose from. The release set (``release.json``, what a server and the client image ship) holds
18 codecs, but not all of them are operating points: some are kept only so that bitstreams old
clients encoded with them still decode. A codec of the set is an operating point when

1. **the server reads it with the classifier it was made for**: a jointly trained codec
   (``Manifest.paired_classifier``) only when that classifier is released too (a server loading
   the set then reads its faces with it); an unpaired codec only when it was fine-tuned for the
   default classifier (``training.config.classifier`` names ``defaults.json``'s classifier),
   which reads unpaired codecs. A joint codec whose classifier was not released would be read
   by the default classifier, which it was not trained for, and a plain rate-distortion codec
   (trained for no classifier) is read by one that was not adapted to it;
2. **it is the newest released version of its name** (``face-hyperprior-fer-l0.0067/3``
   replaces ``/2``: same rate, fine-tuned longer);
3. **no other operating point beats it as served**: a point that another one matches or beats in
   accuracy as served at no more bytes per face (``AS_SERVED``: FER2013 PublicTest, flip TTA,
   each codec read by its classifier; the figures ``fercomp models`` prints from docs/results)
   is left out, so that a larger byte target always buys accuracy. Points without a figure
   are kept;
4. the **default codec** always is one (it is what the client sends without a target).

On the release set this keeps 7 of 18 codecs, 77 B to 360 B per face (docs/CLIENT.md lists
them with the reason for each of the others): the default, two other rates fine-tuned for the
default classifier and four joint pairs; ``fer-l0.0018/2`` (58.32 % at 101.9 B) loses to the
joint 80 B pair (59.38 % at 74.3 B) and ``joint-l0.15/22`` (69.24 % at 403.4 B) to
``joint-l0.08/22`` (69.46 % at 357.0 B), as served (format v2, bf16). The rules read only
``release.json``, ``defaults.json``, the manifests and ``AS_SERVED``, so they work on the client
image, which ships the release set's codecs without its classifiers. A repository without
``release.json`` is its own release set.

``served_points`` narrows the choice to what a server actually has loaded (gRPC ListModels):
the client never picks a codec the server would refuse or read with another classifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.manifest import (
    ArtifactError,
    Manifest,
    ModelRepository,
    bundled_models_dir,
    read_manifest,
)
from core.release import RELEASE_FILE, listed_refs

#: Accuracy as served (bytes/face, accuracy) of the release set's operating points: FER2013
#: PublicTest, all 3,589 faces, flip TTA, each codec read by the classifier a server loading
#: the set picks; the figures ``fercomp models`` shows (benchmarks/served_accuracy.py's run
#: docs/results/served-accuracy-release.json for the pairs, ``fercomp eval`` JSONs for the rates
#: read by the default classifier; tests/client/test_operating_points.py keeps them in step).
AS_SERVED: dict[str, tuple[float, float]] = {
    "face-hyperprior-fer-l0.025/2": (250.3, 0.676),
    "face-hyperprior-fer-l0.0018/2": (101.94, 0.5832),
    "face-hyperprior-fer-l0.0067/3": (165.03, 0.6525),
    "face-hyperprior-fer-l0.08/4": (356.05, 0.6921),
    "face-hyperprior-joint-l0.0012/30": (74.3, 0.5938),
    "face-hyperprior-joint-l0.0067/30": (166.36, 0.6584),
    "face-hyperprior-joint-l0.025/30": (257.42, 0.6815),
    "face-hyperprior-joint-l0.08/22": (357.03, 0.6946),
    "face-hyperprior-joint-l0.15/22": (403.41, 0.6924),
}


@dataclass(frozen=True)
class PointChoice:
    """One codec of the release set and whether rate control may pick it."""

    ref: str
    kept: bool
    why: str
    reader: str | None  # the classifier a server loading the set reads its faces with
    bytes_per_face: float | None  # the manifest's measured average (512 validation faces)


def trained_for(m: Manifest) -> str | None:
    """The classifier a codec was trained to be read by: its paired classifier (joint), else
    the one its fine-tuning used (``training.config.classifier``, a path ``.../NAME/VERSION``),
    else None (a plain rate-distortion codec)."""
    if m.paired_classifier:
        return m.paired_classifier
    config = m.training.get("config") or {}
    raw = str(config.get("classifier") or "").strip().rstrip("/")
    parts = raw.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Versions compare as numbers where they are numbers ("30" after "4")."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._-]", version))


def _released(repo: ModelRepository) -> list[str]:
    if (repo.root / RELEASE_FILE).is_file():
        return listed_refs(repo.root)
    return [m.ref for m in repo.list()]


def release_point_choices(root: str | Path | None = None) -> list[PointChoice]:
    """Every codec of the release set at ``root`` (default: the bundled repository,
    ``$FERCOMP_MODELS_DIR``), in release order, each with the verdict and its reason."""
    repo = ModelRepository(root or bundled_models_dir())
    defaults = repo.defaults()
    released = _released(repo)
    manifests: dict[str, Manifest] = {}
    for ref in released:
        try:
            m = read_manifest(repo.path(ref))
        except ArtifactError:
            continue  # a classifier the client image does not ship, or a missing artifact
        if m.kind == "codec":
            manifests[ref] = m
    default_codec, default_clf = defaults.get("codec"), defaults.get("classifier")
    readable: dict[str, tuple[bool, str, str | None]] = {}
    for ref, m in manifests.items():
        target = trained_for(m)
        if ref == default_codec:
            readable[ref] = (True, "the default codec", m.paired_classifier or default_clf)
        elif m.paired_classifier:
            if m.paired_classifier in released:
                readable[ref] = (True, "joint pair: read by its paired classifier", target)
            else:
                readable[ref] = (
                    False,
                    f"its paired classifier {target} is not released: kept so that old "
                    "bitstreams decode",
                    default_clf,
                )
        elif target is not None and target == default_clf:
            readable[ref] = (True, "fine-tuned for the default classifier", default_clf)
        else:
            made_for = f"trained for {target}" if target else "trained for no classifier"
            readable[ref] = (
                False,
                f"{made_for}, read by the default classifier {default_clf}",
                default_clf,
            )
    newest: dict[str, str] = {}
    for ref, (ok, _, _) in readable.items():
        name, version = ref.split("/")
        if ok and (
            name not in newest or _version_key(version) > _version_key(newest[name].split("/")[1])
        ):
            newest[name] = ref
    candidates = [
        ref
        for ref, (ok, _, _) in readable.items()
        if ok and (ref == default_codec or newest[ref.split("/")[0]] == ref)
    ]
    out = []
    for ref, (ok, why, reader) in readable.items():
        name = ref.split("/")[0]
        beaten_by = _beaten_by(ref, candidates)
        if ok and ref != default_codec and newest[name] != ref:
            ok, why = False, f"superseded by {newest[name]}: kept so that old bitstreams decode"
        elif ok and ref != default_codec and beaten_by is not None:
            (b, a), (b2, a2) = AS_SERVED[ref], AS_SERVED[beaten_by]
            ok, why = (
                False,
                f"{beaten_by} is as accurate or more at fewer bytes as served "
                f"({a2:.2%} at {b2:.1f} B against {a:.2%} at {b:.1f} B)",
            )
        rate = manifests[ref].metrics.get("bytes_per_face")
        out.append(
            PointChoice(
                ref, ok, why, reader, float(rate) if isinstance(rate, int | float) else None
            )
        )
    return out


def _beaten_by(ref: str, candidates: list[str]) -> str | None:
    """A candidate that is at least as accurate as served at no more bytes (the cheapest such)."""
    if ref not in AS_SERVED:
        return None
    size, acc = AS_SERVED[ref]
    better = [
        (AS_SERVED[c][0], c)
        for c in candidates
        if c != ref and c in AS_SERVED and AS_SERVED[c][0] <= size and AS_SERVED[c][1] >= acc
    ]
    return min(better)[1] if better else None


def release_operating_points(root: str | Path | None = None) -> list[str]:
    """The refs rate control chooses from (see the module docstring), in release order."""
    return [c.ref for c in release_point_choices(root) if c.kept]


def served_points(
    manifests: Iterable[Manifest], models: Iterable[Mapping[str, Any]], default: str | None
) -> list[str]:
    """Refs among ``manifests`` that a server listing ``models`` (``FerClient.list_models()``)
    reads as intended: the codec is loaded (same codec id and sha256) and its faces go to the
    classifier it was made for: a joint codec's paired classifier is loaded; an unpaired codec
    is read by the server's active classifier, which must be the one it was fine-tuned for
    (the ``default`` codec is kept whenever it is loaded)."""
    rows = list(models)
    codecs = {
        (str(r.get("codec_id", "")).lower(), str(r.get("sha256", "")))
        for r in rows
        if r.get("kind") == "codec"
    }
    classifiers = {f"{r['name']}/{r['version']}" for r in rows if r.get("kind") == "classifier"}
    active = {
        f"{r['name']}/{r['version']}"
        for r in rows
        if r.get("kind") == "classifier" and r.get("active")
    }
    out = []
    for m in manifests:
        if ((m.codec_id or "").lower(), m.sha256) not in codecs:
            continue
        target = trained_for(m)
        if m.ref == default:
            out.append(m.ref)
        elif m.paired_classifier:
            if m.paired_classifier in classifiers:
                out.append(m.ref)
        elif target is not None and target in active:
            out.append(m.ref)
    return out
