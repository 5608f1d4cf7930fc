"""The FER implementation of the engine's model contract (``service.engine.ModelAPI``).

``FerModelAPI`` turns a bitstream into a ``Prediction``: ``decode_request`` parses the header
and captures the models the request will use (so a swap mid-flight does not change its
result), ``predict`` entropy-decodes, synthesizes and classifies a whole batch, grouping it by
codec and image size itself, and ``encode_response`` builds the transport-neutral result.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import torch

from core.bitstream import Container
from core.labels import EXPRESSIONS
from service.decode_worker import LatentDecoder
from service.engine import Timing
from service.registry import LoadedClassifier, LoadedCodec, ModelRegistry
from service.types import ClassifyInput, Prediction


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
    ) -> None:
        self.registry = registry
        self.decoder = decoder or LatentDecoder("inline")
        # Flip TTA: average the face and its mirror, so a face and its mirror image always get
        # the same expression (docs/MODELS.md has its accuracy gain and cost).
        self.tta_flip = tta_flip

    def setup(self) -> None:
        """Warm the active codec and every classifier that reads faces (the active one and
        the loaded pairs) and the decoder process, so the first request does not pay."""
        self.decoder.start()
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
        """Same-sized containers -> images, through the server's decoder (isolated or inline)."""
        y_hat = self.decoder.decode_latents(codec.path, codec.codec, containers)
        return codec.codec.synthesize(y_hat, h, w)

    def classify_images(self, clf: LoadedClassifier, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities as served (with flip TTA when it is on)."""
        batch = batch.to(clf.device)
        p = clf.model.predict_proba(batch)
        if self.tta_flip:
            p = (p + clf.model.predict_proba(batch.flip(-1))) / 2
        return p

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
