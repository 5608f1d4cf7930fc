"""Edge encoder: one or more codec operating points and per-face rate control.

A deployment may ship several codecs trained at different rate/distortion trade-offs (λ_R).
For a byte budget per face, the encoder picks the *highest-quality* operating point whose
**measured** size on the current face fits: learned codecs are content-adaptive, so a face
with more texture costs more bytes at the same operating point, and the manifest's average
only orders the points, it does not predict this face's size.

Quality order: by the manifest metric ``bytes_per_face`` (or ``bpp``) when every point has one
(more rate = less distortion along one rate-distortion family); otherwise by the size measured
on the face itself. Candidates are tried from the cheapest up; in manifest order the climb
stops at the first point that does not fit (the next ones are bigger on average), so the
common case costs one or two encodes. If nothing fits, the smallest is used and the result is
flagged ``over_budget`` rather than dropping the face.

The server must have every codec the encoder may pick loaded (it decodes by the codec id in
the bitstream header); otherwise it answers ``unknown_codec``.

A point's codec is an ``EdgeCodec`` (an artifact's ONNX bundle, no torch: the normal case) or
a torch ``FaceCodec`` (an artifact without a bundle, or a codec handed in by the caller);
``client.edge_codec.load_encoder_codec`` decides. Faces are numpy arrays [C, H, W] in [0, 1]
(``client.faces.FaceCrop.array``); torch tensors are read as arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from client.edge_codec import EdgeCodec, load_encoder_codec
from core.face_image import InputSpec
from core.manifest import Manifest, ModelRepository, bundled_models_dir

RATE_METRICS = ("bytes_per_face", "bpp")


@dataclass(frozen=True)
class OperatingPoint:
    #: An ``EdgeCodec``, a torch ``FaceCodec``, or anything with ``codec_id_hex``, ``config.
    #: in_channels`` and ``FaceCodec.encode``'s signature.
    codec: Any
    manifest: Manifest | None = None

    @property
    def ref(self) -> str:
        return self.manifest.ref if self.manifest else self.codec.codec_id_hex

    def rate_metric(self, key: str) -> float | None:
        if self.manifest is None:
            return None
        value = self.manifest.metrics.get(key)
        return float(value) if isinstance(value, int | float) else None

    def encode(self, batch: NDArray[np.float32], merged: bool = True) -> list[bytes]:
        """One container per face of ``batch`` [B, C, H, W]."""
        if isinstance(self.codec, EdgeCodec):
            if not merged:
                raise ValueError(
                    f"{self.ref}: the edge codec writes format v2 (one string per face) only; "
                    "CompressAI's two-string layout needs the torch codec"
                )
            return self.codec.encode(batch)
        from client.torch_codec import encode_with_torch  # torch: only for torch codecs

        return encode_with_torch(self.codec, batch, merged)


@dataclass(frozen=True)
class EncodedFace:
    payload: bytes
    codec_ref: str  # "name/version" (or the codec id when no manifest is known)
    codec_id: str  # 8 hex chars, as in the bitstream header
    target_bytes: int | None
    over_budget: bool  # no operating point fitted the target: the smallest was used

    @property
    def size(self) -> int:
        return len(self.payload)


def target_bytes_for(
    target_bytes: int | None = None, budget_bps: float | None = None, fps: float | None = None
) -> int | None:
    """Bytes per face from an explicit target and/or a bandwidth budget (bits/s at ``fps``).

    Both given: the stricter wins. The budget counts container bytes only (not gRPC/HTTP/2
    framing, a few tens of bytes per message).
    """
    limits = []
    if target_bytes is not None:
        if target_bytes < 1:
            raise ValueError(f"target bytes must be positive, got {target_bytes}")
        limits.append(int(target_bytes))
    if budget_bps is not None:
        if fps is None or fps <= 0 or budget_bps <= 0:
            raise ValueError("a bandwidth budget needs a positive budget_bps and fps")
        limits.append(max(1, math.floor(budget_bps / 8.0 / fps)))
    return min(limits) if limits else None


class StreamBudget:
    """Byte targets that keep a stream within a bandwidth budget of ``budget_bps`` bits/s at
    ``fps`` faces per second: a token bucket.

    Each face adds ``budget_bps / 8 / fps`` bytes to the bucket and may spend what is in it:
    bytes a small face leaves unused go to later faces (at most ``burst_s`` seconds of budget
    are kept), a face over its target is paid back by the next ones. So the first ``k`` faces
    of a stream never send more than ``k * budget_bps / 8 / fps`` bytes (the whole stream stays
    within ``budget_bps``), any stretch of ``t`` seconds at most ``(t + burst_s) * budget_bps
    / 8``, and every face may spend at least its own share: a face goes over only when even
    the smallest operating point does not fit the budget (it is then flagged ``over_budget``,
    sent, and paid back).
    """

    def __init__(self, budget_bps: float, fps: float | None, burst_s: float = 1.0) -> None:
        if fps is None or fps <= 0 or budget_bps <= 0:
            raise ValueError("a bandwidth budget needs a positive budget_bps and fps")
        if burst_s < 0:
            raise ValueError("burst_s must be >= 0")
        self.per_face = budget_bps / 8.0 / fps
        self.depth = max(self.per_face, burst_s * budget_bps / 8.0)
        self.credit = 0.0  # bytes in the bucket (negative: owed)
        self.sent = 0
        self.faces = 0

    def next_target(self, cap: int | None = None) -> int:
        """The byte target of the next face (at least 1), at most ``cap`` when given; call
        ``spend`` with what it sent before asking for the next."""
        self.credit = min(self.credit + self.per_face, self.depth)
        limit = self.credit if cap is None else min(self.credit, cap)
        return max(1, math.floor(limit + 1e-9))

    def spend(self, nbytes: int) -> None:
        """Record the bytes the face put on the wire."""
        self.credit -= nbytes
        self.sent += nbytes
        self.faces += 1


class EdgeEncoder:
    """Encodes faces with the best operating point for a byte target."""

    def __init__(
        self,
        points: Sequence[OperatingPoint | Any | tuple[Any, Manifest | None]],
        target_bytes: int | None = None,
        merged: bool = True,
    ) -> None:
        """``points``: operating points, codecs (``EdgeCodec`` / ``FaceCodec``), or (codec,
        manifest) pairs. ``merged`` (default): one string per face (format v2; docs/CODEC.md);
        ``False`` writes CompressAI's two strings (v1, torch codecs only), for servers older
        than the merged layout."""
        self.merged = merged
        ops = [
            p
            if isinstance(p, OperatingPoint)
            else OperatingPoint(*p)
            if isinstance(p, tuple)
            else OperatingPoint(p, getattr(p, "manifest", None))
            for p in points
        ]
        if not ops:
            raise ValueError("an encoder needs at least one codec")
        specs = {self._spec_of(p) for p in ops}
        if len(specs) != 1:
            raise ValueError(f"codecs disagree on the input size: {sorted(map(str, specs))}")
        self.spec: InputSpec = specs.pop()
        self.metric = next(
            (k for k in RATE_METRICS if all(p.rate_metric(k) is not None for p in ops)), None
        )
        if self.metric:
            ops.sort(key=lambda p: p.rate_metric(self.metric) or 0.0)  # type: ignore[arg-type]
        self.points: list[OperatingPoint] = ops
        self.target_bytes = target_bytes_for(target_bytes)

    @staticmethod
    def _spec_of(p: OperatingPoint) -> InputSpec:
        if p.manifest is not None:
            return InputSpec(**p.manifest.input)
        return InputSpec(channels=p.codec.config.in_channels)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_artifacts(
        cls, dirs: Sequence[str | Path], target_bytes: int | None = None, device: str = "cpu"
    ) -> EdgeEncoder:
        """Codec artifact folders: each one's edge bundle, else its torch codec on ``device``."""
        points = [OperatingPoint(*load_encoder_codec(d, device=device)) for d in dirs]
        return cls(points, target_bytes)

    @classmethod
    def from_repository(
        cls,
        root: str | Path,
        refs: Sequence[str] | None = None,
        target_bytes: int | None = None,
        device: str = "cpu",
    ) -> EdgeEncoder:
        """Given codecs of a model repository (default: all of them)."""
        repo = ModelRepository(root)
        refs = list(refs) if refs is not None else [m.ref for m in repo.list("codec")]
        if not refs:
            raise LookupError(f"no codec in model repository {repo.root}")
        return cls.from_artifacts([repo.path(r) for r in refs], target_bytes, device)

    @classmethod
    def default(cls, target_bytes: int | None = None) -> EdgeEncoder:
        """The bundled default codec (``defaults.json`` of the bundled repository)."""
        repo = ModelRepository(bundled_models_dir())
        return cls.from_artifacts([repo.path(repo.defaults()["codec"])], target_bytes)

    @classmethod
    def release(
        cls, target_bytes: int | None = None, root: str | Path | None = None
    ) -> EdgeEncoder:
        """The release set's operating points (``client.operating_points``: the codecs a server
        loading the set reads with the classifier they were made for, newest version each, and
        the default) of the repository ``root`` (default: the bundled one)."""
        from client.operating_points import release_operating_points

        root = Path(root) if root is not None else bundled_models_dir()
        return cls.from_repository(root, release_operating_points(root), target_bytes)

    @property
    def refs(self) -> list[str]:
        return [p.ref for p in self.points]

    # -- encoding -------------------------------------------------------------------------
    def pick(
        self,
        face: NDArray[np.float32] | Any,
        target_bytes: int | None = None,
        budget_bps: float | None = None,
        fps: float | None = None,
        paid_header: bytes | None = None,
    ) -> EncodedFace:
        """Encode one face [C, H, W] with the best operating point for the target."""
        batch = np.asarray(face, dtype=np.float32)[None]
        return self.encode_batch(batch, target_bytes, budget_bps, fps, paid_header)[0]

    def encode_batch(
        self,
        faces: NDArray[np.float32] | Sequence[Any] | Any,
        target_bytes: int | None = None,
        budget_bps: float | None = None,
        fps: float | None = None,
        paid_header: bytes | None = None,
    ) -> list[EncodedFace]:
        """Encode faces ([B, C, H, W] or a list of [C, H, W], numpy arrays or CPU tensors); one
        result per face, in order.

        Without a target (here or at construction) the highest-quality point is used.
        ``paid_header``: the compact stream header the receiver already has
        (docs/BITSTREAM.md): a face of that codec costs its record only, the container less
        the header, and is measured against the target so.
        """
        if isinstance(faces, Sequence) and not isinstance(faces, np.ndarray):
            if not faces:
                return []
            batch = np.stack([np.asarray(f, dtype=np.float32) for f in faces])
        else:
            batch = np.asarray(faces, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[0] == 0:
            return []
        target = target_bytes_for(target_bytes, budget_bps, fps)
        if target is None:
            target = self.target_bytes
        n = batch.shape[0]

        def cost(payload: bytes) -> int:
            if paid_header and payload.startswith(paid_header):
                return len(payload) - len(paid_header)
            return len(payload)

        if len(self.points) == 1 or (target is None and self.metric):
            point = self.points[-1]
            return [
                self._result(point, p, target, target is not None and cost(p) > target)
                for p in point.encode(batch, merged=self.merged)
            ]
        # candidates[i] = list of (point, payload) encoded so far for face i
        candidates: list[list[tuple[OperatingPoint, bytes]]] = [[] for _ in range(n)]
        active = list(range(n))
        for point in self.points:
            if not active:
                break
            payloads = point.encode(batch[active], merged=self.merged)
            still = []
            for i, payload in zip(active, payloads, strict=True):
                candidates[i].append((point, payload))
                # In manifest order a face that overflows will not fit any later point.
                if not (self.metric and target is not None and cost(payload) > target):
                    still.append(i)
            active = still
        return [self._choose(c, target, cost) for c in candidates]

    def _choose(
        self,
        cands: list[tuple[OperatingPoint, bytes]],
        target: int | None,
        cost: Callable[[bytes], int],
    ) -> EncodedFace:
        fitting = [c for c in cands if target is None or cost(c[1]) <= target]
        if fitting:
            # Highest quality: the last fitting point in manifest order, else the biggest.
            point, payload = fitting[-1] if self.metric else max(fitting, key=lambda c: len(c[1]))
            return self._result(point, payload, target, False)
        point, payload = min(cands, key=lambda c: cost(c[1]))
        return self._result(point, payload, target, True)

    @staticmethod
    def _result(
        point: OperatingPoint, payload: bytes, target: int | None, over: bool
    ) -> EncodedFace:
        return EncodedFace(
            payload=payload,
            codec_ref=point.ref,
            codec_id=point.codec.codec_id_hex,
            target_bytes=target,
            over_budget=over,
        )


def codec_artifact_dirs(paths: list[str]) -> list[Path]:
    """Codec artifact folders for ``--codec``: each path is an artifact folder (it holds a
    manifest.json) or a model repository, whose every codec becomes an operating point."""
    dirs: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if (p / "manifest.json").is_file():
            dirs.append(p)
        elif p.is_dir():
            repo = ModelRepository(p)
            found = [repo.path(m.ref) for m in repo.list("codec")]
            if not found:
                raise LookupError(f"no codec artifact in {p}")
            dirs.extend(found)
        else:
            raise FileNotFoundError(2, "no such codec directory", raw)
    return dirs
