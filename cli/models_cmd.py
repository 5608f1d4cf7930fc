"""``fercomp models``: list a model repository with what each manifest says about the model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # core.artifacts imports torch: kept out of `fercomp --help`
    from core.artifacts import Manifest, ModelRepository

# manifest metrics shown in the table (measured by the trainer on its validation faces)
COLUMNS = (
    ("bytes/face", "bytes_per_face", "{:.1f}"),
    ("PSNR", "bitstream_psnr", "{:.2f}"),
    ("acc (decoded)", "bitstream_accuracy", "{:.4f}"),
    ("acc (raw)", "val_acc_clean", "{:.4f}"),
    ("acc", "val_accuracy", "{:.4f}"),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list the artifacts of a model repository")
    p.add_argument("--models", metavar="DIR", help="model repository (default: bundled models)")
    p.add_argument("--kind", choices=("codec", "classifier"), help="only this kind")
    p.add_argument("--json", action="store_true", help="one JSON object per artifact")
    p.add_argument(
        "--release-to",
        metavar="DIR",
        type=Path,
        help="copy the release set (release.json; only --kind if given) into the empty DIR "
        "instead of listing: what an image ships",
    )
    p.set_defaults(func=run)


def _row(m: Manifest, default: set[str]) -> dict[str, Any]:
    t = m.training
    return {
        "ref": m.ref,
        "kind": m.kind,
        "default": m.ref in default,
        "trainer": t.get("trainer"),
        "lmbda": t.get("config", {}).get("lmbda") if m.kind == "codec" else None,
        "steps": t.get("steps"),
        "codec_id": m.codec_id,
        "metrics": m.metrics,
    }


def _stage(repo: ModelRepository, dest: Path, kind: Literal["codec", "classifier"] | None) -> int:
    from core.release import stage_release

    staged = stage_release(repo, dest, kind)
    print(
        json.dumps(
            {"release_to": str(staged.dest), "artifacts": len(staged.refs), "bytes": staged.bytes}
        )
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from core.artifacts import ModelRepository, bundled_models_dir

    root = Path(args.models) if args.models else bundled_models_dir()
    if not root.is_dir():
        raise ValueError(f"model repository {root} is not a directory")
    repo = ModelRepository(root)
    if args.release_to is not None:
        return _stage(repo, args.release_to, args.kind)
    try:
        default = set(repo.defaults().values())
    except ValueError:  # a repository without defaults.json is still listable
        default = set()
    rows = [_row(m, default) for m in repo.list(args.kind)]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    head = ["artifact", "kind", "trainer", "λ", "steps", *(c[0] for c in COLUMNS)]
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---:|---:|" + "---:|" * len(COLUMNS))
    for r in rows:
        cells = [
            r["ref"] + (" (default)" if r["default"] else ""),
            r["kind"],
            str(r["trainer"] or ""),
            "" if r["lmbda"] is None else f"{r['lmbda']:g}",
            "" if r["steps"] is None else str(r["steps"]),
        ]
        for _, key, fmt in COLUMNS:
            v = r["metrics"].get(key)
            cells.append("" if v is None else fmt.format(v))
        print("| " + " | ".join(cells) + " |")
    return 0
