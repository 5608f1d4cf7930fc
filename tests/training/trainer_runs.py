"""Helpers of the trainer tests: tiny configs and the ``fercomp train`` CLI in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cli.main import main
from training.config import DEFAULTS

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "width": 8,
    "N": 16,
    "M": 24,
    "epochs": 1,
    "batch_size": 16,
    "eval_batch_size": 32,
    "max_steps_per_epoch": 2,
    "limit_val": 16,
}


def tiny_config(tmp_path: Path, data: Path, trainer: str, **extra: Any) -> Path:
    """A tiny TOML config (values are str/int/float/bool: JSON literals are valid TOML)."""
    tiny = {k: v for k, v in TINY.items() if k in DEFAULTS[trainer]}
    values = {"data": str(data), "export_dir": str(tmp_path / "models"), **tiny, **extra}
    cfg = tmp_path / f"{trainer}.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return cfg


def tiny_pair(model_repo: Path) -> dict[str, str]:
    """The init codec and the classifier a finetune / joint run starts from."""
    return {
        "init_codec": str(model_repo / "tiny-codec" / "1"),
        "classifier": str(model_repo / "tiny-classifier" / "1"),
    }


def train_cli(*args: str | Path) -> int:
    return main(["train", *map(str, args), "--device", "cpu"])


def read_log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))
