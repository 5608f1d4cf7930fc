"""End-of-training measurement with real bitstreams, and artifact export with provenance.

The rate a codec reports during training is the entropy model's estimate. What a deployment
pays is the size of the container on the wire, so every exported codec is measured by actually
encoding the validation faces with ``FaceCodec.encode`` (header included), decoding them back,
and - when a classifier is available - classifying the decoded faces.
"""

from __future__ import annotations

import copy
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.artifacts import Manifest, save_classifier, save_codec
from core.classifier import FERClassifier
from core.codec import FaceHyperprior
from core.face_codec import FaceCodec
from core.release import RELEASE_FILE, listed_refs
from training.config import REPO_ROOT


@torch.no_grad()
def bitstream_metrics(
    codec_model: FaceHyperprior,
    images: np.ndarray,
    labels: np.ndarray,
    device: torch.device,
    classifier: FERClassifier | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Encode/decode ``images`` (uint8 [N,48,48]) for real: bytes, bpp, PSNR, accuracy."""
    model = copy.deepcopy(codec_model).cpu()
    model.update(force=True)
    # The codec id only names the codec in headers; it does not change any size.
    codec = FaceCodec(model, b"\0\0\0\0", device=device)
    n_bytes, sq_err, psnrs, correct = 0, 0.0, [], 0
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(images[s : s + batch_size]).unsqueeze(1).float().div_(255.0)
        payloads = codec.encode(x.to(device))
        n_bytes += sum(len(p) for p in payloads)
        x_hat = torch.stack(codec.decode(payloads)).cpu()
        # Compare the 8-bit images a receiver would display / classify.
        x_hat = (x_hat * 255.0).round() / 255.0
        mse = ((x_hat - x) ** 2).flatten(1).mean(1)
        sq_err += float(mse.sum())
        psnrs += [10.0 * math.log10(1.0 / max(float(m), 1e-10)) for m in mse]
        if classifier is not None:
            logits = classifier(x_hat.to(device))
            y = torch.from_numpy(labels[s : s + batch_size]).to(device)
            correct += int((logits.argmax(1) == y).sum())
    n = len(images)
    h, w = images.shape[1:]
    out = {
        "bitstream_faces": n,
        "bytes_per_face": n_bytes / n,
        "bitstream_bpp": 8.0 * n_bytes / (n * h * w),
        "bitstream_psnr": 10.0 * math.log10(1.0 / max(sq_err / n, 1e-10)),
        "bitstream_psnr_mean": float(np.mean(psnrs)),
    }
    if classifier is not None:
        out["bitstream_accuracy"] = correct / n
    return out


def git_commit() -> str | None:
    """The commit of the code that trained (None outside a git checkout): manifest provenance."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(
    trainer: str,
    cfg: dict[str, Any],
    summary: dict[str, Any],
    device: torch.device,
    world: int,
    data_path: Path,
    sizes: dict[str, int],
) -> dict[str, Any]:
    return {
        "trainer": trainer,
        "config": cfg,
        "git_commit": git_commit(),
        "epochs": summary["epochs"],
        "best_epoch": summary["best_epoch"],
        "steps": summary["steps"],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world,
        "wall_time_s": summary["wall_time_s"],
        "dataset": data_path.name,
        "split_sizes": sizes,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def refuse_released_export(export_dir: Path, refs: list[str]) -> None:
    """Refuse, before training, to export over an artifact of the export directory's release set
    (``release.json``): clients' bitstreams name a codec by its weights' checksum, so new
    weights under a released NAME/VERSION would stop them decoding. A new version is free."""
    if not (export_dir / RELEASE_FILE).is_file():
        return
    # Names only: a released artifact deleted to be retrained is exactly the case to refuse.
    # A malformed release file refuses too (it cannot say what is released).
    released = set(listed_refs(export_dir))
    clash = [r for r in refs if r in released]
    if clash:
        raise ValueError(
            f"{', '.join(clash)} in {export_dir} belong to its release set (release.json); "
            "export under a new version (--set version='\"N\"') or to another --set export_dir"
        )


def _prefixed(val: dict[str, float], prefix: str = "val_") -> dict[str, float]:
    return {f"{prefix}{k}": round(v, 6) for k, v in val.items()}


def export_classifier(
    model: FERClassifier,
    cfg: dict[str, Any],
    summary: dict[str, Any],
    training: dict[str, Any],
    name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    name = name or cfg["name"]
    metrics: dict[str, Any] = _prefixed(summary["val"])
    if "acc" in summary["val"]:
        metrics["val_accuracy"] = round(summary["val"]["acc"], 6)
    metrics |= extra or {}
    out = Path(cfg["export_dir"]) / name / cfg["version"]
    return save_classifier(
        model.cpu().eval(), out, name, cfg["version"], training=training, metrics=metrics
    )


def export_codec(
    model: FaceHyperprior,
    cfg: dict[str, Any],
    summary: dict[str, Any],
    training: dict[str, Any],
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classifier: FERClassifier | None = None,
) -> Manifest:
    model = model.cpu().eval()
    limit = cfg["export_eval_limit"]
    if limit > 0:
        val_images, val_labels = val_images[:limit], val_labels[:limit]
    metrics: dict[str, Any] = _prefixed(summary["val"])
    metrics["lmbda"] = cfg["lmbda"]
    if len(val_images):
        # Measured on the CPU, where codecs are deployed (edge client and server): the
        # entropy coder runs there anyway, and the result does not depend on the GPU.
        cpu = torch.device("cpu")
        clf = classifier.to(cpu).eval() if classifier is not None else None
        metrics |= bitstream_metrics(
            model, val_images, val_labels, cpu, clf, cfg["eval_batch_size"]
        )
    out = Path(cfg["export_dir"]) / cfg["name"] / cfg["version"]
    return save_codec(model, out, cfg["name"], cfg["version"], training=training, metrics=metrics)


def realign_codec(
    src: Path, export_dir: Path, version: str, align_log2: int, name: str | None = None
) -> Manifest:
    """Re-export a codec artifact at another alignment, weights unchanged (issue 11).

    The new artifact gets its own codec id (the alignment is sealed in the weights file) and
    keeps the source's training provenance, so a joint codec stays paired with its classifier.
    Its metrics are dropped: they were measured at the source's alignment.
    """
    import dataclasses

    from core.artifacts import load_codec_model

    model, m = load_codec_model(src)
    model.config = dataclasses.replace(model.config, align_log2=align_log2)
    family = m.training.get("family") or m.training.get("trainer") or m.name.split("-")[0]
    training = {
        **m.training,
        "realigned_from": m.ref,
        "family": f"{family}-a{align_log2}",
        "git_commit": git_commit(),
    }
    name = name or m.name
    out = Path(export_dir) / name / version
    return save_codec(model, out, name, version, training=training, metrics={})
