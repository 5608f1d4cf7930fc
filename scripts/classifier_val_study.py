"""Test-time and weight-space options for the baseline classifier, scored on the validation split.

Issue 10 asks to choose on the 2,872 faces held out of Training (``val_fraction`` 0.1, seed 0,
the split of fer-resnet18/2, /3 and /5), never on PublicTest. Three questions, one table each:

* ``views``: does averaging more views than the face and its mirror (shifted crops, a zoom)
  beat flip TTA? Each view costs one more classifier forward per face on the server.
* ``soup``: does the uniform weight average of classifiers of one lineage beat its members
  (with the averaged BatchNorm statistics, and with the statistics recomputed on Training)?
* ``ensemble``: does averaging the flip-TTA probabilities of several classifiers beat the best?

    python -m scripts.classifier_val_study --data ../shared/data/fer2013.npz \\
        --models fer-resnet18/3 fer-resnet18/5 --study views soup ensemble
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.artifacts import load_classifier
from training.data import load_dataset, split_train_val

View = Callable[[Tensor], Tensor]


def shifted(dx: int, dy: int, pad: int = 2) -> View:
    def view(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        return xp[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]

    return view


def zoomed(scale: float) -> View:
    def view(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        n = round(h * scale)
        o = (n - h) // 2
        return F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False)[
            ..., o : o + h, o : o + w
        ]

    return view


@torch.no_grad()
def probs(model: nn.Module, x: Tensor, view: View | None = None, mirror: bool = False) -> Tensor:
    out = []
    for i in range(0, len(x), 512):
        xb = x[i : i + 512] if view is None else view(x[i : i + 512])
        out.append(torch.softmax(model(xb.flip(-1) if mirror else xb).float(), 1))
    return torch.cat(out)


def accuracy(p: Tensor, y: Tensor) -> float:
    return float((p.argmax(1) == y).float().mean())


def study_views(model: nn.Module, x: Tensor, y: Tensor) -> list[tuple[str, int, float]]:
    shifts = {"h2": [(2, 0), (-2, 0)], "hv2": [(2, 0), (-2, 0), (0, 2), (0, -2)]}
    shifts["diag1"] = [(1, 1), (-1, -1), (1, -1), (-1, 1)]
    base = probs(model, x) + probs(model, x, mirror=True)
    rows = [("face only", 1, accuracy(probs(model, x), y)), ("face + mirror", 2, accuracy(base, y))]
    for name, offsets in shifts.items():
        p = base.clone()
        for dx, dy in offsets:
            v = shifted(dx, dy)
            p += probs(model, x, v) + probs(model, x, v, mirror=True)
        rows.append((f"+ shifts {name}, each mirrored", 2 + 2 * len(offsets), accuracy(p, y)))
    z = zoomed(1.1)
    p = base + probs(model, x, z) + probs(model, x, z, mirror=True)
    rows.append(("+ zoom 1.1, mirrored", 4, accuracy(p, y)))
    return rows


def soup(models: list[nn.Module]) -> nn.Module:
    """Uniform average of the float tensors of same-architecture models (integer buffers kept)."""
    states = [m.state_dict() for m in models]
    avg = {
        k: sum(s[k].float() for s in states) / len(states) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    models[0].load_state_dict(avg)
    return models[0]


@torch.no_grad()
def recompute_bn(model: nn.Module, x: Tensor) -> None:
    """Cumulative BatchNorm statistics over ``x`` (half of the faces mirrored, as in training)."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    g = torch.Generator().manual_seed(0)
    for i in range(0, len(x), 256):
        xb = x[i : i + 256]
        flip = torch.rand(len(xb), 1, 1, 1, generator=g) < 0.5
        model(torch.where(flip, xb.flip(-1), xb))
    model.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fer2013.npz")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--models", nargs="+", required=True, help="classifier refs, NAME/VERSION")
    ap.add_argument("--study", nargs="+", choices=("views", "soup", "ensemble"), required=True)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.manual_seed(0)

    faces, labels = load_dataset(a.data, "Training")[:2]
    faces, labels = np.asarray(faces), np.asarray(labels)
    tr, va = split_train_val(labels, a.val_fraction, a.seed)
    to_x = lambda idx: torch.from_numpy(faces[idx]).float().div(255).unsqueeze(1)  # noqa: E731
    x, y = to_x(va), torch.from_numpy(labels[va]).long()
    load = lambda ref: load_classifier(Path(a.models_dir) / ref)[0]  # noqa: E731
    print(f"validation split: {len(y)} faces (val_fraction {a.val_fraction}, seed {a.seed})")

    if "views" in a.study:
        for ref in a.models:
            print(f"\n{ref}: views averaged | forwards per face | accuracy")
            for name, n, acc in study_views(load(ref), x, y):
                print(f"  {name:34s} {n:3d}  {acc:.4f}")
    if "soup" in a.study:
        tta = lambda m: accuracy(probs(m, x) + probs(m, x, mirror=True), y)  # noqa: E731
        print("\nweight soup | accuracy with flip TTA")
        for ref in a.models:
            print(f"  {ref:34s} {tta(load(ref)):.4f}")
        m = soup([load(r) for r in a.models])
        print(f"  {'soup, averaged BN statistics':34s} {tta(m):.4f}")
        recompute_bn(m, to_x(tr))
        print(f"  {'soup, BN recomputed on Training':34s} {tta(m):.4f}")
    if "ensemble" in a.study:
        print("\nensemble of flip-TTA probabilities | accuracy")
        total = torch.zeros(len(y), 7)
        for ref in a.models:
            m = load(ref)
            p = probs(m, x) + probs(m, x, mirror=True)
            total += p
            print(f"  {ref:34s} {accuracy(p, y):.4f}")
        print(f"  {'ensemble':34s} {accuracy(total, y):.4f}")


if __name__ == "__main__":
    main()
