"""ModelRegistry: the codecs and classifier the server uses, and safe switches between them.

* Several codecs are loaded at once, keyed by the 4-byte codec id written in every bitstream,
  so clients still sending an older codec's streams keep working after a codec swap.
* Exactly one codec is *active* (what new clients should download) and one classifier is
  active (what new requests are classified with). A request captures the classifier when it
  is submitted, so in-flight work finishes on the model it started with.
* With ``pair_classifiers``, a codec trained jointly with a classifier (its manifest names it,
  ``Manifest.paired_classifier``) has its faces read by that classifier, loaded beside it when
  the repository has it: a server then serves every joint pair of a release at its own
  accuracy at once. Faces of unpaired codecs go to the active classifier. At startup a paired
  classifier that is missing or fails to load is logged and the codec falls back to the active
  one; a swap falls back only for a missing one and refuses a broken one.
* A swap is load -> verify (core.artifacts) -> smoke test -> optional accuracy guard ->
  atomic switch. Any failure raises ``SwapError`` and leaves the serving models untouched.
  The previous model goes on a bounded rollback stack; rollback is one call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch

from core import bitstream
from core.artifacts import (
    ArtifactError,
    ArtifactNotFound,
    Manifest,
    ModelRepository,
    load_classifier,
    load_codec,
    read_manifest,
)
from core.classifier import FERClassifier
from core.face_codec import FaceCodec
from core.release import listed_refs
from service.errors import SwapCode, SwapError
from service.validation import AccuracyGuard, smoke_test_classifier, smoke_test_codec

log = logging.getLogger("fercomp.service.registry")
Kind = Literal["codec", "classifier"]
KINDS: tuple[Kind, ...] = ("codec", "classifier")


@dataclass(frozen=True, eq=False)
class LoadedCodec:
    manifest: Manifest
    codec: FaceCodec
    path: Path

    @property
    def ref(self) -> str:
        return self.manifest.ref

    @property
    def codec_id(self) -> bytes:
        return self.codec.codec_id


@dataclass(frozen=True, eq=False)
class LoadedClassifier:
    manifest: Manifest
    model: FERClassifier
    path: Path
    device: torch.device

    @property
    def ref(self) -> str:
        return self.manifest.ref


@dataclass(frozen=True)
class SwapOutcome:
    kind: Kind
    previous: str
    active: str
    changed: bool
    accuracy: dict[str, Any] | None = None


@dataclass
class _State:
    codecs: dict[bytes, LoadedCodec] = field(default_factory=dict)
    codec: LoadedCodec | None = None
    classifier: LoadedClassifier | None = None
    paired: dict[bytes, LoadedClassifier] = field(default_factory=dict)  # codec id -> reader
    history: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in KINDS})


class ModelRegistry:
    def __init__(
        self,
        repo: ModelRepository,
        device: str = "cpu",
        guard: AccuracyGuard | None = None,
        limits: bitstream.Limits | None = None,
        history_depth: int = 5,
        on_change: Callable[[list[tuple[Manifest, bool]]], None] | None = None,
        on_swap: Callable[[str, str], None] | None = None,
        pair_classifiers: bool = True,
    ) -> None:
        self.repo = repo
        self.pair_classifiers = pair_classifiers
        self.device = torch.device(device)
        self.guard = guard
        self.limits = limits or bitstream.Limits()
        self.history_depth = history_depth
        self._on_change = on_change or (lambda models: None)
        self._on_swap = on_swap or (lambda kind, result: None)
        self._s = _State()
        self._lock = threading.Lock()  # guards _s; held only for pointer updates
        self._swap_lock = threading.Lock()  # one swap/rollback at a time

    # -- startup --------------------------------------------------------------------------
    def load_initial(self, preload: Literal["release", "all", "default"] = "release") -> None:
        """Load defaults.json's codec + classifier, then the other codecs ``preload`` names:
        ``release`` those of the repository's release.json (``all`` without one), ``all``
        every codec in the repository, ``default`` none. Paired classifiers follow them."""
        defaults = self.repo.defaults()
        codec = self._load_codec(defaults["codec"])
        classifier = self._load_classifier(defaults["classifier"], codec)
        codecs = {codec.codec_id: codec}
        for m in self._preload_codecs(preload):
            if m.codec_id and bytes.fromhex(m.codec_id) not in codecs:
                try:
                    extra = self._load_codec(m.ref)
                except SwapError as e:  # a broken old version must not stop the server
                    log.warning("skipping codec %s: %s", m.ref, e.message)
                    continue
                codecs[extra.codec_id] = extra
        paired: dict[bytes, LoadedClassifier] = {}
        for c in codecs.values():
            self._add_pair(c, paired, classifier)
        with self._lock:
            self._s = _State(codecs=codecs, codec=codec, classifier=classifier, paired=paired)
        log.info(
            "models loaded: codec=%s classifier=%s codecs=%d paired=%d",
            codec.ref,
            classifier.ref,
            len(codecs),
            len(paired),
        )
        self._on_change(self.models())

    def _preload_codecs(self, preload: str) -> list[Manifest]:
        if preload == "default":
            return []
        if preload == "release":
            try:
                refs = listed_refs(self.repo.root)
            except ArtifactError as e:  # no release.json: a research checkout, load it all
                log.info("no release set (%s): loading every codec", e)
            else:
                out = []
                for ref in refs:
                    try:
                        m = read_manifest(self.repo.path(ref))
                    except ArtifactError as e:  # listed but absent/broken: serve the rest
                        log.warning("release.json names %s: %s", ref, e)
                        continue
                    if m.kind == "codec":
                        out.append(m)
                return out
        return self.repo.list("codec")

    @property
    def ready(self) -> bool:
        return self._s.codec is not None and self._s.classifier is not None

    # -- request path ---------------------------------------------------------------------
    @property
    def active_codec(self) -> LoadedCodec:
        c = self._s.codec
        if c is None:
            raise RuntimeError("no codec loaded")
        return c

    @property
    def active_classifier(self) -> LoadedClassifier:
        c = self._s.classifier
        if c is None:
            raise RuntimeError("no classifier loaded")
        return c

    def classifier_for(self, codec: LoadedCodec) -> LoadedClassifier:
        """The classifier that reads ``codec``'s faces: its paired one when loaded, else the
        active classifier."""
        return self._s.paired.get(codec.codec_id) or self.active_classifier

    def codecs(self) -> list[LoadedCodec]:
        return list(self._s.codecs.values())

    def codec_by_id(self, codec_id: bytes) -> LoadedCodec:
        found = self._s.codecs.get(codec_id)
        if found is None:
            have = ", ".join(f"{c.ref} ({c.codec_id.hex()})" for c in self.codecs()) or "none"
            raise bitstream.UnknownCodec(
                f"codec {codec_id.hex()} is not loaded on this server; loaded codecs: {have}"
            )
        return found

    def parse(self, payload: bytes) -> tuple[bitstream.Container, LoadedCodec]:
        """Validate a payload and find the codec named in its header (stdlib + dict lookup)."""
        header = bitstream.read_header(payload, self.limits)
        codec = self.codec_by_id(header.codec_id)
        return codec.codec.parse(payload, self.limits), codec

    # -- listing --------------------------------------------------------------------------
    def models(self) -> list[tuple[Manifest, bool]]:
        """(manifest, active) for every loaded codec and every classifier held in memory."""
        s = self._s
        out = [(c.manifest, c is s.codec) for c in s.codecs.values()]
        seen = set()
        for c in [s.classifier, *reversed(s.history["classifier"]), *s.paired.values()]:
            if c is not None and c.ref not in seen:
                seen.add(c.ref)
                out.append((c.manifest, c is s.classifier))
        return out

    # -- swaps ----------------------------------------------------------------------------
    def swap(self, kind: Kind, ref: str) -> SwapOutcome:
        """Load, verify, test and activate ``ref``; raises ``SwapError`` and changes nothing
        on failure."""
        if kind not in KINDS:
            raise SwapError("bad_request", f"kind must be one of {KINDS}, got {kind!r}")
        with self._exclusive(kind):
            try:
                outcome = self._swap(kind, ref)
            except SwapError as e:
                self._on_swap(kind, e.code)
                log.warning("swap %s -> %s refused: %s", kind, ref, e.message)
                raise
        self._on_swap(kind, "success" if outcome.changed else "unchanged")
        log.info("swap %s: %s -> %s", kind, outcome.previous, outcome.active)
        self._on_change(self.models())
        return outcome

    def rollback(self, kind: Kind) -> SwapOutcome:
        if kind not in KINDS:
            raise SwapError("bad_request", f"kind must be one of {KINDS}, got {kind!r}")
        with self._exclusive(kind), self._lock:
            stack = self._s.history[kind]
            if not stack:
                self._on_swap(kind, "nothing_to_rollback")
                raise SwapError("nothing_to_rollback", f"no previous {kind} to roll back to")
            target = stack.pop()
            previous = self._s.codec if kind == "codec" else self._s.classifier
            assert previous is not None
            if kind == "codec":
                self._s.codec = target
            else:
                self._s.classifier = target
        self._on_swap(kind, "rollback")
        log.info("rollback %s: %s -> %s", kind, previous.ref, target.ref)
        self._on_change(self.models())
        return SwapOutcome(kind, previous.ref, target.ref, True)

    def _exclusive(self, kind: str) -> _NonBlocking:
        return _NonBlocking(self._swap_lock, kind)

    def _swap(self, kind: Kind, ref: str) -> SwapOutcome:
        codec, classifier = self.active_codec, self.active_classifier
        current = codec if kind == "codec" else classifier
        path = self._resolve(ref)
        if path == current.path:
            return SwapOutcome(kind, current.ref, current.ref, False)
        accuracy = None
        if kind == "codec":
            cand_codec = self._existing_codec(path) or self._load_codec(ref, path)
            # The same weights under another version decode identically (the codec id is
            # their checksum): keep the loaded one, so its pair is not re-decided by the copy.
            cand_codec = self._s.codecs.get(cand_codec.codec_id, cand_codec)
            if cand_codec is codec:
                return SwapOutcome(kind, codec.ref, codec.ref, False)
            paired = dict(self._s.paired)
            # A swap is an operator's act: a pair present but broken refuses it rather than
            # leave a joint codec on a classifier it was not trained with.
            self._add_pair(cand_codec, paired, classifier, strict=True)
            if self.guard is not None:
                # each codec with the classifier that will read it (its pair, if any)
                reader = paired.get(cand_codec.codec_id, classifier)
                serving = paired.get(codec.codec_id, classifier)
                accuracy = self.guard.check(
                    (cand_codec.codec, reader.model), (codec.codec, serving.model)
                )
                accuracy.update(reader=reader.ref, serving_reader=serving.ref)
            # copy-on-write: listing and lookups read the dict without the lock
            codecs = {**self._s.codecs, cand_codec.codec_id: cand_codec}
            with self._lock:
                self._s.codecs = codecs
                self._s.paired = paired
                self._push_history("codec", codec)
                self._s.codec = cand_codec
            return SwapOutcome(kind, codec.ref, cand_codec.ref, True, accuracy)
        cand = self._load_classifier(ref, codec, path)
        if self.guard is not None:
            # The active classifier reads unpaired codecs: check it on one of those when the
            # active codec has a pair (both classifiers read the same decoded faces either way).
            check = self._unpaired_codec() or codec
            accuracy = self.guard.check((check.codec, cand.model), (check.codec, classifier.model))
            accuracy["codec"] = check.ref
        with self._lock:
            self._push_history("classifier", classifier)
            self._s.classifier = cand
        return SwapOutcome(kind, classifier.ref, cand.ref, True, accuracy)

    def _push_history(self, kind: str, item: Any) -> None:
        stack = self._s.history[kind]
        stack.append(item)
        del stack[: -self.history_depth]

    def _add_pair(
        self,
        codec: LoadedCodec,
        paired: dict[bytes, LoadedClassifier],
        active: LoadedClassifier,
        strict: bool = False,
    ) -> None:
        """Load ``codec``'s paired classifier into ``paired`` (once per classifier ref); a
        missing one is logged and leaves the codec on the active classifier, and so is a
        broken one unless ``strict`` (a swap), where it raises ``SwapError``."""
        ref = codec.manifest.paired_classifier
        if not self.pair_classifiers or ref is None or codec.codec_id in paired:
            return
        known = {c.ref: c for c in [active, *paired.values()]}
        if ref in known:
            paired[codec.codec_id] = known[ref]
            return
        try:
            paired[codec.codec_id] = self._load_classifier(ref, codec)
        except SwapError as e:
            if strict and e.code != "not_found":
                code = cast(SwapCode, e.code)  # a SwapError's code is always a SwapCode
                raise SwapError(
                    code, f"codec {codec.ref}: paired classifier {ref}: {e.message}"
                ) from e
            # Absent is expected: a release keeps old codecs for their bitstreams, not their
            # classifiers. Present but broken is worth a warning.
            level = logging.INFO if e.code == "not_found" else logging.WARNING
            log.log(
                level, "codec %s: paired classifier %s not loaded (%s)", codec.ref, ref, e.message
            )

    def _unpaired_codec(self) -> LoadedCodec | None:
        """A loaded codec the active classifier reads: the active codec if it has no pair,
        else any unpaired one (None when every loaded codec has its own reader)."""
        s = self._s
        active = [s.codec] if s.codec is not None else []
        return next((c for c in [*active, *s.codecs.values()] if c.codec_id not in s.paired), None)

    def _existing_codec(self, path: Path) -> LoadedCodec | None:
        return next((c for c in self.codecs() if c.path == path), None)

    # -- loading --------------------------------------------------------------------------
    def _resolve(self, ref: str) -> Path:
        if ref.startswith(("/", "\\", "~")) or ":" in ref:  # a path, not a reference
            raise SwapError("bad_ref", f"{ref!r} is not NAME/VERSION in the model repository")
        try:
            return self.repo.path(ref)
        except ArtifactNotFound as e:
            raise SwapError("not_found", str(e)) from e
        except ArtifactError as e:  # malformed, or escaping the repository
            raise SwapError("bad_ref", str(e)) from e

    def _load_codec(self, ref: str, path: Path | None = None) -> LoadedCodec:
        path = path or self._resolve(ref)
        try:
            codec, manifest = load_codec(path, self.device)
        except ArtifactError as e:
            raise SwapError("invalid_artifact", str(e)) from e
        smoke_test_codec(codec)
        return LoadedCodec(manifest, codec, path)

    def _load_classifier(
        self, ref: str, codec: LoadedCodec, path: Path | None = None
    ) -> LoadedClassifier:
        path = path or self._resolve(ref)
        try:
            model, manifest = load_classifier(path, self.device)
        except ArtifactError as e:
            raise SwapError("invalid_artifact", str(e)) from e
        # Served with its BatchNorms folded into the convolutions (docs/MODELS.md, "Folded
        # BatchNorm"): the trained model's function up to float rounding, measured as served.
        model = model.folded()
        smoke_test_classifier(model, codec.codec.config.in_channels, self.device)
        return LoadedClassifier(manifest, model, path, self.device)


class _NonBlocking:
    """Context manager: take ``lock`` or refuse at once (a second concurrent swap is a 409)."""

    def __init__(self, lock: threading.Lock, kind: str) -> None:
        self.lock, self.kind = lock, kind

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            raise SwapError("swap_in_progress", "another swap or rollback is running")

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
