"""Training step time of the classifier and the codec: fp32 vs channels_last vs bf16 autocast.

One optimizer step (forward, backward, update) on a random batch of 48x48 grayscale faces,
timed after warm-up, for each precision/memory-format mode and thread count. bf16 autocast is
what the trainers' ``amp = true`` runs on the CPU; the codec's entropy models always compute
their likelihoods in float32 (see ``training/trainers.py``), so only the codec transforms see bf16.

    python -m benchmarks.train_step                      # table, both models, 1 and 2 threads
    python -m benchmarks.train_step --models classifier --widths 32 --threads 2 --steps 10
    python -m benchmarks.train_step --json out.json

Figures are machine- and load-dependent; docs/TRAINING.md records the ones we measured with
the command used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from core.classifier import ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior
from training.losses import RateDistortionLoss
from training.precision import train_autocast

MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last")


def _classifier_step(width: int, mode: str, batch: int) -> Callable[[], None]:
    model = FERClassifier(ClassifierConfig(width=width)).train()
    cl = "channels_last" in mode
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 1, 48, 48)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))

    def step() -> None:
        with train_autocast(mode.startswith("bf16"), x.device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _codec_step(n: int, m: int, mode: str, batch: int) -> Callable[[], None]:
    model = FaceHyperprior(CodecConfig(N=n, M=m)).train()
    cl = "channels_last" in mode
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    crit = RateDistortionLoss(0.0067)
    x = torch.rand(batch, 1, 48, 48)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with train_autocast(mode.startswith("bf16"), x.device):
            out = model(x)
        out["x_hat"] = out["x_hat"].float()
        out["likelihoods"] = {k: v.float() for k, v in out["likelihoods"].items()}
        loss = crit(out, x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_step(step: Callable[[], None], steps: int, warmup: int) -> float:
    """Median seconds per step after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="classifier,codec")
    ap.add_argument("--widths", default="32,64", help="classifier widths")
    ap.add_argument("--codec", default="64x96", help="codec N x M")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--codec-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    n, mm = (int(v) for v in a.codec.lower().split("x"))
    cases: list[tuple[str, Callable[[str], Callable[[], None]]]] = []
    for name in a.models.split(","):
        if name == "classifier":
            for w in (int(v) for v in a.widths.split(",")):
                cases.append(
                    (
                        f"classifier w{w} b{a.batch}",
                        lambda mode, w=w: _classifier_step(w, mode, a.batch),
                    )
                )
        elif name == "codec":
            cases.append(
                (
                    f"codec N{n} M{mm} b{a.codec_batch}",
                    lambda mode: _codec_step(n, mm, mode, a.codec_batch),
                )
            )
        else:
            ap.error(f"unknown model {name!r}")
    rows: list[dict[str, Any]] = []
    print(f"{'model':<24} {'threads':>7} " + " ".join(f"{m:>20}" for m in modes) + "   speed-up")
    for label, make in cases:
        for th in (int(v) for v in a.threads.split(",")):
            torch.set_num_threads(th)
            per_mode = {m: time_step(make(m), a.steps, a.warmup) for m in modes}
            base = per_mode.get("fp32")
            best = min(per_mode, key=per_mode.__getitem__)
            gain = f"{base / per_mode[best]:.2f}x ({best})" if base else ""
            cells = " ".join(f"{per_mode[m] * 1e3:>17.0f} ms" for m in modes)
            print(f"{label:<24} {th:>7} {cells}   {gain}", flush=True)
            rows.append({"model": label, "threads": th, "step_s": per_mode, "best": best})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
