"""`fercomp train {classifier,codec,finetune,joint}` (eval and report are registered here too).

Examples::

    fercomp train classifier --config configs/cpu/classifier.toml
    fercomp train codec --config configs/gpu/codec.toml --lambdas 0.0018,0.0035,0.0067
    fercomp train finetune --config configs/gpu/finetune.toml --set lambda_c=0.5 --resume
    torchrun --nproc_per_node 2 -m cli.main train classifier --config configs/gpu/classifier.toml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TRAINERS = ("classifier", "codec", "finetune", "joint")


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    # eval / report subcommands are registered here as well: _register_eval(subparsers), ...


def _register_train(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier or codec from a TOML config",
        description="Train a model and export it as an artifact (see configs/).",
    )
    p.add_argument("trainer", choices=TRAINERS, help="what to train")
    p.add_argument(
        "--config", type=Path, help="TOML config (configs/cpu/*.toml, configs/gpu/*.toml)"
    )
    p.add_argument("--out", type=Path, help="run directory (default runs/TRAINER/NAME-VERSION)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--fresh", action="store_true", help="discard an existing run in RUN_DIR")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set epochs=3 --set data=fer2013.csv",
    )
    p.add_argument(
        "--lambdas", help="comma-separated lmbda values: train one codec per value, in sequence"
    )
    p.set_defaults(func=_train)


def _parse_lambdas(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ValueError(f"--lambdas expects comma-separated numbers, got {text!r}") from e
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"--lambdas expects positive numbers, got {text!r}")
    return values


def _train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.runner import train_main

    if args.resume and args.fresh:
        raise ValueError("--resume and --fresh are mutually exclusive")
    cfg = load_config(args.trainer, args.config, args.overrides)
    results = train_main(
        args.trainer,
        cfg,
        args.out,
        device=args.device,
        resume=args.resume,
        fresh=args.fresh,
        lambdas=_parse_lambdas(args.lambdas),
    )
    import os

    if os.environ.get("RANK", "0") == "0":
        for r in results:
            print(
                json.dumps(
                    {k: r[k] for k in ("run_dir", "best_epoch", "steps", "artifacts")}
                    | {"val": {k: round(v, 5) for k, v in r["val"].items()}}
                )
            )
    return 0
