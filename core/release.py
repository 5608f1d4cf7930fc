"""The release set: which artifacts of a model repository an image or an install ships.

The repository keeps every trained version (results are reproducible from it and old
bitstreams stay decodable), but a server loads every codec it finds at start-up and an image
carries every file it is given. ``release.json`` names what a deployment needs, in groups that
say why each is there::

    {"groups": {"served defaults": ["codec-a/2", "clf-b/2"],
                "former default codecs (old bitstreams)": ["codec-a/1"]}}

``stage_release`` copies exactly those artifacts (checksums verified after the copy) plus
``defaults.json`` and ``release.json`` into an empty folder, which is then a repository of its
own. The defaults must be part of the set: an image whose defaults are missing would not start.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.manifest import DEFAULTS, ArtifactError, ModelRepository, read_manifest, verify_weights

RELEASE_FILE = "release.json"


@dataclass(frozen=True)
class StagedRelease:
    dest: Path
    refs: tuple[str, ...]
    bytes: int


def listed_refs(root: Path) -> list[str]:
    """The NAME/VERSION refs ``root/release.json`` names, in order, each once; the format is
    checked but not that the artifacts exist (``release_refs`` does)."""
    f = root / RELEASE_FILE
    if not f.is_file():
        raise ArtifactError(f"no {RELEASE_FILE} in {root}")
    try:
        groups = json.loads(f.read_text())["groups"]
    except (ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{f}: expected {{'groups': {{why: [NAME/VERSION, ...]}}}}") from e
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise ArtifactError(f"{f}: 'groups' must map a reason to a list of NAME/VERSION")
    refs: list[str] = []
    for items in groups.values():
        for ref in items:
            if not isinstance(ref, str) or ref.count("/") != 1:
                raise ArtifactError(f"{f}: {ref!r} is not NAME/VERSION (a release pins versions)")
            if ref not in refs:
                refs.append(ref)
    return refs


def release_refs(repo: ModelRepository) -> list[str]:
    """The artifacts ``release.json`` names, checked: each exists and the defaults are in."""
    refs = listed_refs(repo.root)
    for ref in refs:
        repo.path(ref)  # raises ArtifactNotFound with the reference in the message
    missing = sorted(set(repo.defaults().values()) - set(refs))
    if missing:
        raise ArtifactError(
            f"{repo.root / RELEASE_FILE}: the defaults {missing} are not in the release set"
        )
    return refs


def release_pairs(repo: ModelRepository) -> list[tuple[str, str]]:
    """(codec, classifier) pairs the release set ships, as a server with ``pair_classifiers``
    reads them: the default codec first, then each released codec whose paired classifier
    (``Manifest.paired_classifier``) is released too; each codec once, with its pair when
    released, else (the default codec only) with the default classifier."""
    refs = release_refs(repo)
    defaults = repo.defaults()

    def released_pair(ref: str) -> str | None:
        clf = read_manifest(repo.path(ref)).paired_classifier
        return clf if clf in refs else None

    pairs = [(defaults["codec"], released_pair(defaults["codec"]) or defaults["classifier"])]
    for ref in refs:
        clf = released_pair(ref)
        if clf is not None and ref != defaults["codec"]:
            pairs.append((ref, clf))
    return pairs


def _copy_verified(repo: ModelRepository, ref: str, root: Path) -> int:
    """Copy one artifact under ``root``; its size in bytes once its weights verify there."""
    target = root / ref
    shutil.copytree(repo.path(ref), target)
    try:
        verify_weights(target, read_manifest(target))  # a torn copy must not ship
    except ArtifactError as e:
        # The inner error says which: a missing weights file or a checksum mismatch.
        raise ArtifactError(f"{ref}: the staged copy does not verify: {e}") from e
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())


def stage_release(
    repo: ModelRepository,
    dest: str | Path,
    kind: Literal["codec", "classifier"] | None = None,
) -> StagedRelease:
    """Copy the release set (only one ``kind`` if given) into the empty folder ``dest``."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ArtifactError(f"{dest} is not empty; the release is staged into an empty folder")
    refs = release_refs(repo)
    if kind is not None:
        refs = [r for r in refs if read_manifest(repo.path(r)).kind == kind]
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside dest and renamed at the end: a failed copy leaves no half release behind.
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    work.chmod(0o755)  # mkdtemp makes it 0700; an image's non-root server must read it
    try:
        total = sum(_copy_verified(repo, ref, work) for ref in refs)
        for name in (DEFAULTS, RELEASE_FILE):
            shutil.copy2(repo.root / name, work / name)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        work.rename(dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return StagedRelease(dest=dest, refs=tuple(refs), bytes=total)
