"""Classifier cost by width, with and without flip TTA: faces/s in-process and model size.

The served classifier is a ResNet-18 topology whose stage widths scale with ``width`` (64 is
torchvision's original). This prints what a width costs the server: inference faces/s on
batches of 48x48 faces (eval mode, float32, as served), with flip TTA (two forwards per face)
and without, and the parameter count and float16 file size. Accuracy comes from the trained
artifacts' evaluations (docs/MODELS.md puts the two together).

    python -m benchmarks.classifier_widths --widths 16,32,64 --threads 2 --batch 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from core.classifier import ClassifierConfig, FERClassifier


def faces_per_s(model: FERClassifier, batch: int, tta: bool, repeat: int) -> float:
    x = torch.rand(batch, 1, 48, 48)
    times = []
    with torch.inference_mode():
        for i in range(repeat + 2):
            t0 = time.perf_counter()
            p = torch.softmax(model(x), 1)
            if tta:
                p = (p + torch.softmax(model(x.flip(-1)), 1)) / 2
            if i >= 2:  # two warm-up batches
                times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--widths", default="16,32,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = []
    print(f"{'width':>5} {'params (M)':>10} {'fp16 MB':>8} {'faces/s':>9} {'faces/s TTA':>12}")
    for w in (int(v) for v in a.widths.split(",")):
        model = FERClassifier(ClassifierConfig(width=w)).eval()
        n = sum(p.numel() for p in model.parameters())
        row = {
            "width": w,
            "params_m": n / 1e6,
            "fp16_mb": 2 * n / 2**20,
            "faces_per_s": faces_per_s(model, a.batch, False, a.repeat),
            "faces_per_s_tta": faces_per_s(model, a.batch, True, a.repeat),
        }
        rows.append(row)
        print(
            f"{w:>5} {row['params_m']:>10.2f} {row['fp16_mb']:>8.1f} "
            f"{row['faces_per_s']:>9.0f} {row['faces_per_s_tta']:>12.0f}",
            flush=True,
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "batch": a.batch, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
