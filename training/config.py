"""Training configuration: flat TOML files, per-trainer defaults, ``--set key=value`` overrides.

A config is a flat table (no sections) so that every key can be overridden from the command
line with the same name. Unknown keys are errors: a typo must not silently train the wrong
thing. Override values are parsed as TOML literals (``lr=3e-4``, ``amp=false``,
``name="x"`` or just ``name=x``) and must have the type of the default.

Relative input paths (``data``, ``init_codec``, ``classifier``) are looked up in the current
directory first, then in the repository root, so the shipped configs work from either place.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINERS = ("classifier", "codec", "finetune", "joint")

COMMON: dict[str, Any] = {
    # data
    "data": "../shared/data/fer2013.npz",
    "split": "Training",  # the split that is divided into train / validation
    "label_source": "fer2013",  # or "ferplus" (drops faces without a FER+ label)
    "val_fraction": 0.1,
    "limit_train": 0,  # >0: use only the first K training faces (tests, smoke runs)
    "limit_val": 0,
    "loader": "memory",  # "memory": whole set on the device; "dataloader": torch DataLoader
    "num_workers": 0,  # DataLoader workers (loader = "dataloader" only)
    "augment": True,
    "aug_shift": 0.1,  # max translation, fraction of the side
    "aug_rotate": 10.0,  # max rotation, degrees
    "aug_zoom": 0.1,  # zoom in [1 - aug_zoom, 1 + aug_zoom]
    # optimisation
    "seed": 0,
    "epochs": 10,
    "batch_size": 64,  # global batch (split across DDP ranks)
    "eval_batch_size": 256,
    "lr": 1e-3,
    "optimizer": "adam",  # adam | adamw | sgd
    "momentum": 0.9,
    "weight_decay": 0.0,
    "scheduler": "cosine",  # cosine | constant (both with optional linear warm-up)
    "warmup_epochs": 0.0,
    # bf16 autocast of training forward passes, CPU or CUDA (training/precision.py); codecs'
    # entropy models, encode and decode always stay float32/float64
    "amp": False,
    "channels_last": False,  # channels_last memory format for training (CPU: faster with amp)
    "max_steps_per_epoch": 0,  # >0: cap the steps of each epoch (tiny runs)
    # >0: stop after the epoch that would otherwise overrun this many minutes (a safety stop for
    # rented accelerators; the schedule is not shortened, so prefer right-sizing `epochs`)
    "time_budget_min": 0.0,
    "checkpoint_every": 0,  # >0: also checkpoint every K optimizer steps
    "log_every": 20,  # progress-bar refresh, in steps
    "select": "best",  # export the best validation epoch ("best") or the last ("last")
    # export
    "export": True,
    "export_dir": "models",
    "name": "model",
    "version": "1",
}

CLASSIFIER: dict[str, Any] = {
    "width": 32,
    "stem": "small",
    "optimizer": "sgd",
    "lr": 0.05,
    "weight_decay": 5e-4,
    "nesterov": True,
    "label_smoothing": 0.1,
    "warmup_epochs": 1.0,
    "amp": True,
    "channels_last": True,
    "erase_prob": 0.0,  # random erasing, per image (training/recipe.py)
    "mix": "none",  # none | mixup | cutmix
    "mix_alpha": 0.2,
    "mix_prob": 0.5,  # share of batches that are mixed
    "ema_decay": 0.0,  # >0: keep and export an EMA of the weights
    "tta_flip": False,  # select (and report) with the face+mirror average, as served
    "init_classifier": "",  # warm start from a classifier artifact (a resume point)
    # "webp": train (and validate) on faces WebP-encoded and decoded at a quality drawn per face
    # from webp_quality_range: the WebP-adapted classifier, the fair competitor of joint codecs
    # (training/input_codec.py)
    "input_codec": "none",
    "webp_quality_range": [5, 60],
    "name": "fer-resnet18",
}

CODEC: dict[str, Any] = {
    "N": 64,
    "M": 96,
    "lmbda": 0.0067,
    "lr": 1e-4,
    "aux_lr": 1e-3,
    "clip_grad": 1.0,
    "aug_rotate": 0.0,  # codecs: flips and small shifts only, no resampling blur
    "aug_zoom": 0.0,
    "aug_shift": 0.05,
    "classifier": "",  # optional: classifier artifact to report accuracy on decoded faces
    "init_codec": "",  # optional warm start from a codec artifact (e.g. another lambda)
    # pixel alignment of the trained codec (docs/CODEC.md): 6 pads a 48x48 face to 64x64, as
    # every codec before issue 11; 4 pads to 16 only (y 3x3). Also applied to init_codec.
    "align_log2": 6,
    "export_eval_limit": 0,  # >0: measure real bitstreams on the first K validation faces
    "name": "face-hyperprior",
}

# finetune / joint: the paper's loss lambda_r*bpp + lambda_d*mse + lambda_c*CE(classifier(x_hat))
TASK: dict[str, Any] = {
    **CODEC,
    "init_codec": "",  # codec artifact to start from ("{lmbda}" is replaced in sweeps)
    "classifier": "",  # classifier artifact (frozen in finetune, trained on in joint)
    "lambda_r": 1.0,
    "lambda_d": -1.0,  # <0: relative, |lambda_d| * lmbda * 255**2 (-1 = the RD loss's weight)
    "lambda_c": 1.0,
    "label_smoothing": 0.0,
    # Knowledge distillation (training/losses.py): + kd_weight * T^2 * KL(teacher(x) || clf(x_hat))
    # with a frozen teacher classifier artifact on the uncompressed face. 0 = the paper's loss.
    "kd_teacher": "",
    "kd_weight": 0.0,
    "kd_temperature": 4.0,
    "lr": 5e-5,
    "name": "face-hyperprior-fer",
}

JOINT: dict[str, Any] = {
    **TASK,
    "classifier_lr": 1e-4,
    "classifier_weight_decay": 1e-4,
    # CE on the *uncompressed* faces too, weighted by lambda_clean, so the jointly trained
    # classifier stays accurate on raw faces instead of specialising to decoded ones.
    "lambda_clean": 0.5,
    "classifier_name": "fer-resnet18-joint",
    "name": "face-hyperprior-joint",
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "classifier": {**COMMON, **CLASSIFIER},
    "codec": {**COMMON, **CODEC},
    "finetune": {**COMMON, **TASK},
    "joint": {**COMMON, **JOINT},
}

#: Keys a config file may set besides the defaults (informational, ignored by trainers).
EXTRA_KEYS = {"trainer", "description"}


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise ValueError(f"config key {key!r} must be a {type(default).__name__}, got {value!r}")


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with a TOML literal value; bare words are strings."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value, got {item!r}")
    key, raw = (s.strip() for s in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_config(
    trainer: str, path: str | Path | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Defaults for ``trainer`` <- the TOML file <- ``--set`` overrides, type-checked."""
    if trainer not in DEFAULTS:
        raise ValueError(f"unknown trainer {trainer!r}: choose one of {', '.join(TRAINERS)}")
    defaults = DEFAULTS[trainer]
    cfg = dict(defaults)
    items: list[tuple[str, Any, str]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"invalid TOML in {path}: {e}") from e
        if data.get("trainer", trainer) != trainer:
            raise ValueError(f"{path} is a {data['trainer']!r} config, not {trainer!r}")
        items += [(k, v, str(path)) for k, v in data.items()]
    items += [(*parse_override(o), "--set") for o in overrides or []]
    for key, value, where in items:
        if key in EXTRA_KEYS:
            continue
        if key not in defaults:
            raise ValueError(
                f"unknown config key {key!r} in {where} for the {trainer} trainer "
                f"(known: {', '.join(sorted(defaults))})"
            )
        cfg[key] = _coerce(key, value, defaults[key])
    validate(trainer, cfg)
    return cfg


def validate(trainer: str, cfg: dict[str, Any]) -> None:
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if cfg[key] < 1:
            raise ValueError(f"config key {key!r} must be >= 1, got {cfg[key]}")
    if cfg["optimizer"] not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be adam, adamw or sgd, got {cfg['optimizer']!r}")
    if cfg["scheduler"] not in ("cosine", "constant"):
        raise ValueError(f"scheduler must be cosine or constant, got {cfg['scheduler']!r}")
    if cfg["loader"] not in ("memory", "dataloader"):
        raise ValueError(f"loader must be memory or dataloader, got {cfg['loader']!r}")
    if cfg["select"] not in ("best", "last"):
        raise ValueError(f"select must be best or last, got {cfg['select']!r}")
    if trainer == "classifier":
        if cfg["mix"] not in ("none", "mixup", "cutmix"):
            raise ValueError(f"mix must be none, mixup or cutmix, got {cfg['mix']!r}")
        if not 0.0 <= cfg["ema_decay"] < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {cfg['ema_decay']}")
        if not 0.0 <= cfg["erase_prob"] <= 1.0:
            raise ValueError(f"erase_prob must be in [0, 1], got {cfg['erase_prob']}")
        if cfg["input_codec"] not in ("none", "webp"):
            raise ValueError(f"input_codec must be none or webp, got {cfg['input_codec']!r}")
        q = cfg["webp_quality_range"]
        if not (
            isinstance(q, list)
            and len(q) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in q)
            and 1 <= q[0] <= q[1] <= 100
        ):
            raise ValueError(
                f"webp_quality_range must be [lo, hi] with 1 <= lo <= hi <= 100, got {q}"
            )
    if trainer != "classifier" and not 4 <= cfg["align_log2"] <= 8:
        raise ValueError(f"align_log2 must be in 4..8, got {cfg['align_log2']}")
    if trainer in ("finetune", "joint"):
        for key in ("init_codec", "classifier"):
            if not cfg[key]:
                raise ValueError(f'the {trainer} trainer needs {key} = "ARTIFACT_DIR"')
        if cfg["kd_weight"] < 0 or cfg["kd_temperature"] <= 0:
            raise ValueError("kd_weight must be >= 0 and kd_temperature > 0")
        if cfg["kd_weight"] > 0 and not cfg["kd_teacher"]:
            raise ValueError('kd_weight > 0 needs kd_teacher = "CLASSIFIER_ARTIFACT"')


def resolve_input(path: str | Path) -> Path:
    """A relative input path: the current directory if it exists there, else the repo root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    in_repo = REPO_ROOT / p
    return in_repo if in_repo.exists() else p
