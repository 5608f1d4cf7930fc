"""The FER implementation of the engine's model contract (``service.engine.ModelAPI``).

``FerModelAPI`` turns a bitstream into a ``Prediction``: ``decode_request`` parses the header
and captures the models the request will use (so a swap mid-flight does not change its
result), ``predict`` entropy-decodes, synthesizes and classifies a whole batch, grouping it by
codec and image size itself, and ``encode_response`` builds the transport-neutral result.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import torch

from core.bitstream import Container
from core.classifier import FERClassifier
from core.face_codec import FaceCodec
from core.labels import EXPRESSIONS
from service.decode_worker import LatentDecoder
from service.engine import Timing
from service.precision import Precision, inference_mode, prepare_input, prepare_model
from service.registry import LoadedClassifier, LoadedCodec, ModelRegistry
from service.types import ClassifyInput, Prediction

log = logging.getLogger("fercomp.service.model_api")


def synthesize(
    codec: FaceCodec, y_hat: torch.Tensor, h: int, w: int, precision: Precision
) -> torch.Tensor:
    """The served synthesis: decoded latents -> float32 images [B, C, h, w] in [0, 1], g_s at
    ``precision`` (bf16: autocast, channels_last weights and input). The latents come from the
    entropy path, which never changes precision."""
    prepare_model(codec.model.g_s, precision)  # g_s only: the entropy path keeps its layout
    with inference_mode(precision, codec.device):
        x_hat = codec.synthesize(prepare_input(y_hat, precision), h, w)
    return x_hat.float()


def classify(
    model: FERClassifier, batch: torch.Tensor, precision: Precision, tta_flip: bool
) -> torch.Tensor:
    """The served classification: images on the model's device -> float32 probabilities.

    Flip TTA is one forward of both views: the batch and its mirror image go through the
    network as one batch of 2B, and each face gets the mean of its two halves' probabilities
    (the same as two forwards, up to float rounding: BatchNorm is per sample in eval)."""
    n = len(batch)
    if tta_flip:
        batch = torch.cat([batch, batch.flip(-1)])
    prepare_model(model, precision)
    with inference_mode(precision, batch.device):
        p = model.predict_proba(prepare_input(batch, precision)).float()
    if tta_flip:
        p = (p[:n] + p[n:]) / 2
    return p


@dataclass(frozen=True, eq=False)
class FerItem:
    input: ClassifyInput
    container: Container
    codec: LoadedCodec
    classifier: LoadedClassifier


@dataclass(frozen=True)
class FerOutput:
    probabilities: list[float]
    decode_s: float
    inference_s: float


class FerModelAPI:
    """Bitstream -> (entropy decode, synthesis) -> classifier -> probabilities."""

    def __init__(
        self,
        registry: ModelRegistry,
        decoder: LatentDecoder | None = None,
        tta_flip: bool = False,
        precision: Precision = "fp32",
    ) -> None:
        self.registry = registry
        self.decoder = decoder or LatentDecoder("inline")
        # Flip TTA: average the face and its mirror, so a face and its mirror image always get
        # the same expression (docs/MODELS.md has its accuracy gain and cost).
        self.tta_flip = tta_flip
        # Of g_s and the classifier only (service/precision.py); the entropy path is float64.
        self.precision: Precision = precision

    def setup(self) -> None:
        """Warm the active codec and every classifier that reads faces (the active one and
        the loaded pairs) and the decoder process, so the first request does not pay."""
        self.decoder.start()
        log.info(
            "inference precision %s (synthesis and classifier; flip TTA %s)",
            self.precision, "on" if self.tta_flip else "off",
            extra={"precision": self.precision},
        )  # fmt: skip
        codec = self.registry.active_codec
        c = codec.codec.config.in_channels
        payloads = codec.codec.encode(torch.full((1, c, 48, 48), 0.5))
        x = self.decode_images(codec, [codec.codec.parse(p) for p in payloads], 48, 48)
        readers = {r.ref: r for r in map(self.registry.classifier_for, self.registry.codecs())}
        readers.setdefault(self.registry.active_classifier.ref, self.registry.active_classifier)
        for clf in readers.values():
            if clf.model.config.in_channels == c:
                self.classify_images(clf, x)

    def decode_images(
        self, codec: LoadedCodec, containers: list[Container], h: int, w: int
    ) -> torch.Tensor:
        """Same-sized containers -> float32 images, through the server's decoder (isolated or
        inline); synthesis at ``self.precision``."""
        y_hat = self.decoder.decode_latents(codec.path, codec.codec, containers)
        return synthesize(codec.codec, y_hat, h, w, self.precision)

    def classify_images(self, clf: LoadedClassifier, batch: torch.Tensor) -> torch.Tensor:
        """float32 probabilities as served (flip TTA when on), at ``self.precision``."""
        return classify(clf.model, batch.to(clf.device), self.precision, self.tta_flip)

    def decode_request(self, request: ClassifyInput) -> FerItem:
        container, codec = self.registry.parse(request.payload)
        return FerItem(request, container, codec, self.registry.classifier_for(codec))

    def predict(self, items: list[FerItem]) -> list[FerOutput | BaseException]:
        n = len(items)
        images: list[torch.Tensor | None] = [None] * n
        decode_s = [0.0] * n
        errors: dict[int, BaseException] = {}
        # Entropy decoding and synthesis need one codec and one image size per call.
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, it in enumerate(items):
            hdr = it.container.header
            groups.setdefault((id(it.codec), hdr.height, hdr.width), []).append(i)
        for (_, h, w), idx in groups.items():
            codec = items[idx[0]].codec
            t0 = time.perf_counter()
            try:
                x_hat = self.decode_images(codec, [items[i].container for i in idx], h, w)
            except Exception:
                # One bad stream must not fail its batch-mates: redo the group one by one.
                for i in idx:
                    t1 = time.perf_counter()
                    try:
                        one = self.decode_images(codec, [items[i].container], h, w)
                    except Exception as e:
                        errors[i] = e
                        continue
                    images[i], decode_s[i] = one[0], time.perf_counter() - t1
                continue
            dt = time.perf_counter() - t0
            for j, i in enumerate(idx):
                images[i], decode_s[i] = x_hat[j], dt
        # Classification: one forward per (classifier, image size).
        infer_s = [0.0] * n
        probs: list[list[float] | None] = [None] * n
        cgroups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for i, img in enumerate(images):
            if img is not None:
                cgroups.setdefault((id(items[i].classifier), tuple(img.shape)), []).append(i)
        for idx in cgroups.values():
            clf = items[idx[0]].classifier
            t0 = time.perf_counter()
            try:
                batch = torch.stack([images[i] for i in idx])  # type: ignore[misc]
                p = self.classify_images(clf, batch).float().cpu().tolist()
            except Exception as e:
                errors.update({i: e for i in idx})
                continue
            dt = time.perf_counter() - t0
            for j, i in enumerate(idx):
                probs[i], infer_s[i] = p[j], dt
        out: list[FerOutput | BaseException] = []
        for i in range(n):
            pi = probs[i]
            out.append(errors[i] if pi is None else FerOutput(pi, decode_s[i], infer_s[i]))
        return out

    def encode_response(self, output: FerOutput, item: FerItem, timing: Timing) -> Prediction:
        p = output.probabilities
        best = max(range(len(p)), key=p.__getitem__)
        meta, h = item.input.meta, item.container.header
        return Prediction(
            id=uuid.uuid4().hex,
            request_id=meta.request_id,
            client_id=meta.client_id,
            stream_id=meta.stream_id,
            created_at=time.time(),
            expression=best,
            expression_name=EXPRESSIONS[best],
            probabilities=p,
            codec_version=item.codec.ref,
            codec_id=item.codec.codec_id.hex(),
            classifier_version=item.classifier.ref,
            received_bytes=len(item.input.payload),
            height=h.height,
            width=h.width,
            channels=h.channels,
            decode_ms=output.decode_s * 1e3,
            inference_ms=output.inference_s * 1e3,
            queue_ms=timing.queue_s * 1e3,
            batch_size=timing.batch_size,
            transport=meta.transport,
            label=meta.label,
        )
