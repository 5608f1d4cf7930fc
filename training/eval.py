"""Rate / distortion / accuracy evaluation of learned codecs against JPEG, WebP and AVIF.

For every operating point (a baseline at one quality, or one learned codec artifact) the faces
of a dataset split are encoded and decoded, and we record the mean payload size per face, bpp,
PSNR, MS-SSIM (definitions in ``training.eval_metrics``) and the accuracy / macro-F1 of every
chosen classifier on the decoded faces. An "uncompressed" record (raw 8-bit pixels) gives the
accuracy ceiling. The result is a JSON document (schema ``fercomp-eval/1``, see
``build_record``) that ``training.report`` turns into tables, plots and BD-rates.

Learned codecs run exactly the deployed path: ``FaceCodec.encode`` -> bytes -> ``decode`` in
batches, and the classifier sees the decoded float tensor, as the server does. Baseline files
are decoded by Pillow to uint8, which is what their receiver would hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.artifacts import Manifest, ModelRepository
from core.classifier import FERClassifier
from core.face_codec import FaceCodec
from training import baselines as bl
from training import eval_metrics as em
from training.eval_models import (
    family_of,
    load_classifiers,
    load_codec_with_pair,
    resolve_device,
)

SCHEMA = "fercomp-eval/1"
DEFAULT_QUALITIES = (5, 10, 20, 30, 50, 75, 90)


@dataclass
class EvalOptions:
    data: Path
    split: str = "PublicTest"
    codecs: list[str] = field(default_factory=list)  # artifact folders or repository refs
    classifiers: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=lambda: list(bl.BASELINES))
    qualities: list[int] = field(default_factory=lambda: list(DEFAULT_QUALITIES))
    limit: int | None = None
    device: str = "auto"
    models_root: Path | None = None  # repository for refs; None = no refs, folders only
    families: dict[str, str] = field(default_factory=dict)  # artifact ref -> family
    pairs: dict[str, str] = field(default_factory=dict)  # codec ref/spec -> classifier spec
    # baseline -> classifier spec fine-tuned on that baseline's decoded faces: adds a curve
    # "<baseline>+adapted" (e.g. webp+adapted), the fair competitor of a joint codec
    adapted: dict[str, str] = field(default_factory=dict)
    batch_size: int = 256
    samples: int = 8  # faces kept (original + decoded per record) for the sample grid
    seed: int = 0
    # "client": every face perturbed once, seeded, as the edge client's photos might deliver
    # it (training/client_variation.py); "none": the split as it is
    perturb: str = "none"


@dataclass
class EvalResult:
    doc: dict[str, Any]
    originals: np.ndarray  # uint8 [k, H, W]: the first faces of the evaluated subset
    decoded: list[np.ndarray]  # per record, uint8 [k, H, W]

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.doc, indent=2, allow_nan=False) + "\n")


def to_faces(images: np.ndarray | list[Any]) -> np.ndarray:
    """Any face images -> uint8 [N, 48, 48], prepared exactly as the client prepares them."""
    from training.data import prepare_faces

    return prepare_faces(images)


def load_faces(opts: EvalOptions) -> tuple[np.ndarray, np.ndarray]:
    from training.data import load_dataset

    images, labels = load_dataset(opts.data, opts.split)
    faces, labels = to_faces(images), np.asarray(labels, dtype=np.int64)
    if opts.limit is not None and opts.limit < len(faces):
        if opts.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {opts.limit}")
        # A seeded random subset: folder datasets are sorted by class, so "the first N" would
        # measure one expression only.
        idx = np.sort(np.random.default_rng(opts.seed).choice(len(faces), opts.limit, False))
        faces, labels = faces[idx], labels[idx]
    if opts.perturb == "client":
        from training.client_variation import perturb_faces

        faces = perturb_faces(faces, opts.seed)
    elif opts.perturb != "none":
        raise ValueError(f"perturb must be 'none' or 'client', got {opts.perturb!r}")
    return faces, labels


def perturb_summary(opts: EvalOptions) -> dict[str, Any] | None:
    """What ``load_faces`` did to the faces, for the JSON (None: nothing)."""
    if opts.perturb == "none":
        return None
    from training.client_variation import CLIENT

    return {"kind": opts.perturb, "seed": opts.seed, **CLIENT.to_dict()}


class Evaluator:
    """Measures operating points on one set of faces with a fixed set of classifiers."""

    def __init__(
        self,
        faces: np.ndarray,
        labels: np.ndarray,
        classifiers: dict[str, FERClassifier],
        device: torch.device,
        batch_size: int = 256,
        samples: int = 8,
    ) -> None:
        self.faces, self.labels = faces, labels
        self.classifiers, self.device = classifiers, device
        self.batch_size, self.samples = batch_size, samples
        self.h, self.w = faces.shape[1:]

    def _batches(self) -> Iterator[tuple[slice, Tensor]]:
        for i in range(0, len(self.faces), self.batch_size):
            sl = slice(i, i + self.batch_size)
            yield sl, torch.from_numpy(self.faces[sl]).unsqueeze(1).to(self.device)

    @torch.inference_mode()
    def measure(
        self, sizes: np.ndarray | list[int], decoded: Iterator[tuple[Tensor, Tensor]]
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Metrics from per-face payload sizes and, per batch in order, (uint8-valued decoded
        images, classifier input in [0, 1]) on ``self.device``. ``sizes`` is read after the
        batches are consumed, so a generator may fill it as it encodes. Returns (fields, sample
        faces)."""
        psnr, msssim, kept = [], [], []
        preds: dict[str, list[np.ndarray]] = {ref: [] for ref in self.classifiers}
        # Flip TTA (the mean of the softmax on the face and its mirror, as the server's
        # tta_flip does) and mirror agreement (same prediction on the face and its mirror).
        preds_tta: dict[str, list[np.ndarray]] = {ref: [] for ref in self.classifiers}
        agree: dict[str, list[np.ndarray]] = {ref: [] for ref in self.classifiers}
        for (_, orig), (dec_u8, dec_in) in zip(self._batches(), decoded, strict=True):
            psnr.append(em.psnr_per_face(orig, dec_u8).cpu())
            msssim.append(em.ms_ssim_per_face(orig, dec_u8).cpu())
            for ref, clf in self.classifiers.items():
                p = torch.softmax(clf(dec_in.float()).float(), 1)
                p_mirror = torch.softmax(clf(dec_in.float().flip(-1)).float(), 1)
                preds[ref].append(p.argmax(1).cpu().numpy())
                preds_tta[ref].append((p + p_mirror).argmax(1).cpu().numpy())
                agree[ref].append((p.argmax(1) == p_mirror.argmax(1)).cpu().numpy())
            if sum(len(k) for k in kept) < self.samples:
                kept.append(dec_u8[: self.samples, 0].to(torch.uint8).cpu().numpy())
        arr = np.asarray(sizes, dtype=np.int64)
        bytes_mean = float(arr.mean())
        fields = {
            "bytes_per_face": bytes_mean,
            "bytes_min": int(arr.min()),
            "bytes_max": int(arr.max()),
            "bpp": 8.0 * bytes_mean / (self.h * self.w),
            "psnr": float(torch.cat(psnr).mean()),
            "ms_ssim": float(torch.cat(msssim).mean()),
            "accuracy": {r: em.accuracy(self.labels, np.concatenate(p)) for r, p in preds.items()},
            "macro_f1": {r: em.macro_f1(self.labels, np.concatenate(p)) for r, p in preds.items()},
            "accuracy_tta": {
                r: em.accuracy(self.labels, np.concatenate(p)) for r, p in preds_tta.items()
            },
            "macro_f1_tta": {
                r: em.macro_f1(self.labels, np.concatenate(p)) for r, p in preds_tta.items()
            },
            "mirror_agreement": {r: float(np.concatenate(a).mean()) for r, a in agree.items()},
        }
        return fields, np.concatenate(kept)[: self.samples]

    def uncompressed(self) -> tuple[dict[str, Any], np.ndarray]:
        sizes = np.full(len(self.faces), self.h * self.w, dtype=np.int64)  # raw 8-bit pixels
        fields, kept = self.measure(sizes, ((x, x / 255.0) for _, x in self._batches()))
        fields["psnr"] = None  # identical images: infinite PSNR, not representable in JSON
        return fields, kept

    def baseline(self, name: str, quality: int) -> tuple[dict[str, Any], np.ndarray]:
        decoded, sizes = bl.roundtrip(self.faces, name, quality)

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            for sl, _ in self._batches():
                x = torch.from_numpy(decoded[sl]).unsqueeze(1).to(self.device)
                yield x, x / 255.0

        return self.measure(sizes, batches())

    def learned(self, codec: FaceCodec) -> tuple[dict[str, Any], np.ndarray]:
        sizes: list[int] = []

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            for _, x in self._batches():
                payloads = codec.encode(x.float() / 255.0)
                sizes.extend(len(p) for p in payloads)
                x_hat = torch.stack(codec.decode(payloads)).to(self.device)
                yield (x_hat * 255.0).round(), x_hat

        return self.measure(sizes, batches())


def adapted_record(record: dict[str, Any], classifier_ref: str) -> dict[str, Any]:
    """The same baseline operating point read by a classifier adapted to that baseline.

    No second encode: the record already holds every classifier's accuracy on these decoded
    faces. ``paired_classifier`` makes the report's curves take the adapted one's (as for a
    jointly trained codec's classifier).
    """
    return {
        **record,
        "name": f"{record['name']}+adapted",
        "family": f"{record['family']}+adapted",
        "paired_classifier": classifier_ref,
        "seconds": 0.0,
    }


def build_record(
    codec: str,
    name: str,
    family: str,
    fields: dict[str, Any],
    quality: int | None = None,
    manifest: Manifest | None = None,
    paired: str | None = None,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """One operating point. ``codec``: none | jpeg | webp | avif | learned."""
    return {
        "codec": codec,
        "name": name,
        "family": family,
        "quality": quality,
        "artifact": manifest.ref if manifest else None,
        "codec_id": manifest.codec_id if manifest else None,
        "paired_classifier": paired,
        **fields,
        "seconds": round(seconds, 3),
    }


def run_eval(opts: EvalOptions, command: str = "") -> EvalResult:
    device = resolve_device(opts.device)
    repo = ModelRepository(opts.models_root) if opts.models_root else None
    names = bl.resolve_baselines(opts.baselines)
    if any(not 1 <= q <= 100 for q in opts.qualities):
        raise ValueError(f"qualities must be in 1..100, got {opts.qualities}")
    clf_specs = list(opts.classifiers)
    if not clf_specs:
        if repo is None:
            raise ValueError("no classifier given: pass --classifier")
        clf_specs = [repo.defaults()["classifier"]]
    classifiers = load_classifiers(clf_specs, repo, device)
    primary = list(classifiers)
    adapted: dict[str, str] = {}
    for base, spec in opts.adapted.items():
        if base not in names:
            raise ValueError(f"--adapted {base}=...: {base} is not among the baselines {names}")
        ((ref, model),) = load_classifiers([spec], repo, device).items()
        classifiers.setdefault(ref, model)
        adapted[base] = ref

    codecs: list[tuple[FaceCodec, Manifest, str | None]] = []
    for spec in opts.codecs:
        codec, m, paired = load_codec_with_pair(spec, repo, device, opts.pairs)
        for ref, model in paired.items():
            classifiers.setdefault(ref, model)
        codecs.append((codec, m, next(iter(paired), None)))

    faces, labels = load_faces(opts)
    ev = Evaluator(faces, labels, classifiers, device, opts.batch_size, opts.samples)
    records: list[dict[str, Any]] = []
    decoded: list[np.ndarray] = []

    def add(fields_kept: tuple[dict[str, Any], np.ndarray], t0: float, **kw: Any) -> None:
        fields, kept = fields_kept
        records.append(build_record(fields=fields, seconds=time.perf_counter() - t0, **kw))
        decoded.append(kept)

    t0 = time.perf_counter()
    add(ev.uncompressed(), t0, codec="none", name="uncompressed", family="uncompressed")
    for name in names:
        for q in opts.qualities:
            t0 = time.perf_counter()
            add(ev.baseline(name, q), t0, codec=name, name=f"{name}-q{q}", family=name, quality=q)
            if name in adapted:
                records.append(adapted_record(records[-1], adapted[name]))
                decoded.append(decoded[-1])
    for codec, m, paired in codecs:
        t0 = time.perf_counter()
        fam = family_of(m, opts.families)
        kw = dict(codec="learned", name=m.ref, family=fam, manifest=m, paired=paired)
        add(ev.learned(codec), t0, **kw)

    doc = {
        "schema": SCHEMA,
        "dataset": str(opts.data),
        "split": opts.split,
        "n": len(faces),
        "limit": opts.limit,
        "perturb": perturb_summary(opts),
        "image_size": [ev.h, ev.w],
        "classifiers": list(classifiers),
        "primary_classifier": primary[0],
        "adapted_classifiers": adapted,
        "device": str(device),
        "baseline_settings": bl.settings_summary(names),
        "metrics": em.metric_notes(),
        "records": records,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
    }
    return EvalResult(doc=doc, originals=faces[: opts.samples].copy(), decoded=decoded)


def format_table(doc: dict[str, Any], max_classifiers: int = 3) -> str:
    """Plain-text table of the records, one line per operating point."""
    refs = doc["classifiers"][:max_classifiers]
    head = f"{'operating point':<28} {'B/face':>8} {'bpp':>6} {'PSNR':>6} {'MS-SSIM':>7}"
    head += "".join(f" {('acc ' + r)[-18:]:>18}" for r in refs)
    lines = [head, "-" * len(head)]
    for r in doc["records"]:
        psnr = "-" if r["psnr"] is None else f"{r['psnr']:.2f}"
        line = f"{r['name'][:28]:<28} {r['bytes_per_face']:>8.1f} {r['bpp']:>6.3f} {psnr:>6}"
        line += f" {r['ms_ssim']:>7.4f}"
        line += "".join(f" {r['accuracy'].get(ref, float('nan')):>18.4f}" for ref in refs)
        lines.append(line)
    return "\n".join(lines)
