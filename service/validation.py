"""Checks a candidate model must pass before it serves: smoke tests and the accuracy guard.

Checksums and architecture are verified by ``core.artifacts`` while loading; what is left is
"does it actually run and produce sane numbers" (smoke tests) and, when a labelled canary set
is configured, "is it not clearly worse than what is serving now" (accuracy guard).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.classifier import EXPRESSIONS, FERClassifier
from core.face_codec import FaceCodec
from service.errors import SwapError
from service.precision import Precision, inference_mode, prepare_input, prepare_model

#: The smoke-test face: a uniform mid-gray 48x48 image (any real codec round-trips it).
SMOKE_SIZE = (48, 48)


def smoke_test_codec(codec: FaceCodec) -> None:
    """Encode and decode a gray face; outputs must have the right shape and be finite."""
    c = codec.config.in_channels
    x = torch.full((1, c, *SMOKE_SIZE), 0.5)
    try:
        payloads = codec.encode(x)
        (x_hat,) = codec.decode(payloads)
    except Exception as e:
        raise SwapError("smoke_test_failed", f"codec round trip failed: {e}") from e
    if tuple(x_hat.shape) != (c, *SMOKE_SIZE) or not bool(torch.isfinite(x_hat).all()):
        raise SwapError("smoke_test_failed", "codec round trip gave a bad or non-finite image")


def smoke_test_classifier(model: FERClassifier, in_channels: int, device: torch.device) -> None:
    """Classify a zero image; the output must be 7 finite probabilities."""
    if model.config.in_channels != in_channels:
        raise SwapError(
            "incompatible",
            f"classifier expects {model.config.in_channels}-channel input, "
            f"its codec produces {in_channels}",
        )
    try:
        p = model.predict_proba(torch.zeros(1, in_channels, *SMOKE_SIZE, device=device))
    except Exception as e:
        raise SwapError("smoke_test_failed", f"classifier forward failed: {e}") from e
    if tuple(p.shape) != (1, len(EXPRESSIONS)) or not bool(torch.isfinite(p).all()):
        raise SwapError(
            "smoke_test_failed",
            f"classifier gave {tuple(p.shape)} / non-finite output, expected (1, 7) finite",
        )


def load_canary(path: Path, size: int) -> tuple[Tensor, Tensor]:
    """A small labelled set from an .npz with ``images`` (N,H,W | N,C,H,W) and ``labels``.

    When the archive has a ``split`` column (like fer2013.npz), test rows are preferred so the
    guard does not measure on training data.
    """
    with np.load(path, allow_pickle=False) as z:
        if "images" not in z or "labels" not in z:
            raise ValueError(f"canary set {path} needs 'images' and 'labels' arrays")
        images, labels = z["images"], z["labels"]
        if "split" in z:
            test = np.flatnonzero(z["split"] != "Training")
            if len(test):
                images, labels = images[test], labels[test]
    keep = np.flatnonzero((labels >= 0) & (labels < len(EXPRESSIONS)))[:size]
    x = torch.from_numpy(np.asarray(images[keep]))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if len(keep) == 0:
        raise ValueError(f"canary set {path} has no usable labelled images")
    return x, torch.from_numpy(np.asarray(labels[keep])).long()


class AccuracyGuard:
    """Refuses a candidate whose canary accuracy is below serving accuracy minus ``margin``."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        margin: float,
        batch: int = 64,
        precision: Precision = "fp32",
    ) -> None:
        self.images, self.labels, self.margin, self.batch = images, labels, margin, batch
        self.precision = precision  # the server's: classifiers are compared as they are served
        self._recon: dict[bytes, Tensor] = {}  # codec id -> reconstructed canary images
        self._lock = threading.Lock()

    def _reconstruct(self, codec: FaceCodec) -> Tensor:
        with self._lock:
            cached = self._recon.get(codec.codec_id)
        if cached is not None:
            return cached
        parts = [
            torch.stack(codec.decode(codec.encode(chunk))).cpu()
            for chunk in torch.split(self.images, self.batch)
        ]
        out = torch.cat(parts)
        with self._lock:
            self._recon[codec.codec_id] = out
        return out

    def accuracy(self, codec: FaceCodec, classifier: FERClassifier) -> float:
        """Top-1 accuracy of ``classifier(codec round trip(canary))`` at the served precision
        (without flip TTA). A bf16 server's classifiers are prepared for it
        (``prepare_model``: bf16 stages), the candidate here too: it is served so if it passes."""
        x_hat = self._reconstruct(codec)
        device = next(classifier.parameters()).device
        prepare_model(classifier, self.precision)
        correct = 0
        with inference_mode(self.precision, device):
            chunks = torch.split(x_hat, self.batch)
            for chunk, y in zip(chunks, torch.split(self.labels, self.batch), strict=True):
                x = prepare_input(chunk.to(device), self.precision)
                pred = classifier.predict_proba(x).argmax(1).cpu()
                correct += int((pred == y).sum())
        return correct / len(self.labels)

    def check(
        self,
        candidate: tuple[FaceCodec, FERClassifier],
        serving: tuple[FaceCodec, FERClassifier],
    ) -> dict[str, Any]:
        """Accuracies of both pairs; raises ``SwapError`` when the candidate regresses."""
        cand, serv = self.accuracy(*candidate), self.accuracy(*serving)
        report: dict[str, Any] = {
            "candidate": cand,
            "serving": serv,
            "margin": self.margin,
            "n": len(self.labels),
        }
        if cand < serv - self.margin:
            raise SwapError(
                "accuracy_regression",
                f"canary accuracy {cand:.4f} is below serving {serv:.4f} - margin "
                f"{self.margin:.4f} on {len(self.labels)} images; swap refused",
            )
        return report
