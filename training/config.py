"""Training configuration: flat TOML files, per-trainer defaults, ``--set key=value`` overrides.

A config is a flat table (no sections) so that every key can be overridden from the command
line with the same name. What a key may hold (type, default, range, meaning) is declared once,
in the trainer's pydantic model in ``training/config_schema.py``; this module reads the file
and the overrides, validates them against that model and turns pydantic's errors into one
line that names the key, where it was set and what was expected (a close match for a typo).
Override values are parsed as TOML literals (``lr=3e-4``, ``amp=false``, ``name="x"`` or just
``name=x``); ``trainer`` and ``description`` may appear in a file and are ignored.

``load_config`` returns a plain ``dict`` (the validated model's ``model_dump()``), not the
model, on purpose: the runner records the *effective* config, writing what a warm start
imposes (``width``, ``N``, ``M``) and what a sweep point changes (``lmbda``, ``name``) into the
same mapping that becomes ``config.json`` and the manifests' ``training.config``, so those
files keep their content; and trainers, loop and export read ``cfg["key"]`` in dozens of
places that other work edits in parallel. The model stays the single definition of what is
valid; ``parse_config`` returns it for code that prefers attributes.

Relative input paths (``data``, ``init_codec``, ``classifier``) are looked up in the current
directory first, then in the repository root, so the shipped configs work from either place.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import ValidationError

from training.config_schema import CONFIG_MODELS, TrainingConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINERS = tuple(CONFIG_MODELS)

#: Keys a config file may set besides the model's (informational, ignored by trainers).
EXTRA_KEYS = {"trainer", "description"}

_TYPE_NAMES = {
    "int_type": "an int",
    "float_type": "a float",
    "bool_type": "a bool (true or false)",
    "string_type": "a string",
}


class ConfigError(ValueError):
    """An invalid config: the CLI prints it as one line (exit status 2)."""


def config_model(trainer: str) -> type[TrainingConfig]:
    if trainer not in CONFIG_MODELS:
        raise ConfigError(f"unknown trainer {trainer!r}: choose one of {', '.join(TRAINERS)}")
    return CONFIG_MODELS[trainer]


def defaults(trainer: str) -> dict[str, Any]:
    """The trainer's default for every key, in the order of ``config.json``."""
    return {k: f.default for k, f in config_model(trainer).model_fields.items()}


#: ``{trainer: {key: default}}``, derived from the models (read it, do not edit it).
DEFAULTS: dict[str, dict[str, Any]] = {t: defaults(t) for t in TRAINERS}


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with a TOML literal value; bare words are strings."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = (s.strip() for s in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _read_file(path: Path, trainer: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {path}: {e}") from e
    if data.get("trainer", trainer) != trainer:
        raise ConfigError(f"{path} is a {data['trainer']!r} config, not {trainer!r}")
    return data


def parse_config(
    trainer: str, values: Mapping[str, Any], sources: Mapping[str, str] | None = None
) -> TrainingConfig:
    """Validate ``values`` (missing keys take the trainer's defaults) into its model.

    ``sources`` says where each key was set (a file, ``--set``) for the error message."""
    model = config_model(trainer)
    values = {k: v for k, v in values.items() if k not in EXTRA_KEYS}
    try:
        return model.model_validate(values)
    except ValidationError as e:
        errors = _merge_union_branches(e.errors())
        problems = [_explain(err, model, values, sources or {}) for err in errors]
        raise ConfigError("; ".join(problems)) from None


def _merge_union_branches(errors: list[Any]) -> list[Any]:
    """A value that fits no branch of a union (``amp``: bool or "auto") fails once per branch;
    report it once, naming every allowed form ("a bool (true or false) or 'auto'")."""
    by_key: dict[str, list[Any]] = {}
    for err in errors:
        by_key.setdefault(str(err["loc"][0]) if err["loc"] else "", []).append(err)
    merged: list[Any] = []
    for key, errs in by_key.items():
        branches = [x for x in errs if len(x["loc"]) > 1]
        if key and len(branches) > 1:
            forms = [
                _TYPE_NAMES.get(x["type"]) or x.get("ctx", {}).get("expected", x["msg"])
                for x in branches
            ]
            merged.append({"loc": (key,), "type": "union", "forms": " or ".join(forms)})
            merged.extend(x for x in errs if len(x["loc"]) <= 1)
        else:
            merged.extend(errs)
    return merged


def load_config(
    trainer: str, path: str | Path | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Defaults for ``trainer`` <- the TOML file <- ``--set`` overrides, validated."""
    config_model(trainer)  # an unknown trainer is reported before the file is read
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        data = _read_file(Path(path), trainer)
        values.update(data)
        sources.update(dict.fromkeys(data, str(path)))
    for item in overrides or []:
        key, value = parse_override(item)
        values[key], sources[key] = value, "--set"
    return parse_config(trainer, values, sources).model_dump()


def _explain(
    err: Any, model: type[TrainingConfig], values: Mapping[str, Any], sources: Mapping[str, str]
) -> str:
    """One pydantic error as a sentence about the config key."""
    if not err["loc"]:  # a model validator: its message is already about the config
        return str(err.get("ctx", {}).get("error", err["msg"]))
    key = str(err["loc"][0])
    where = f" in {sources[key]}" if key in sources else ""
    kind = err["type"]
    if kind == "extra_forbidden":
        known = sorted(model.model_fields)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return f"unknown config key {key!r}{where} for the {model.kind} trainer: {hint}"
    got = f", got {values.get(key)!r}"
    if kind in _TYPE_NAMES:
        return f"config key {key!r}{where} must be {_TYPE_NAMES[kind]}{got}"
    if kind == "union":
        return f"config key {key!r}{where} must be {err['forms']}{got}"
    if kind == "literal_error":
        expected = err["ctx"]["expected"]
        close = difflib.get_close_matches(str(values.get(key)), expected.split("'")[1::2], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"config key {key!r}{where} must be {expected}{got}{hint}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"config key {key!r}{where} must be {_range(model, key)}{got}"
    if kind == "string_too_short":
        return f"config key {key!r}{where} must not be empty"
    return f"config key {key!r}{where}: {err['msg']}{got}"


def _range(model: type[TrainingConfig], key: str) -> str:
    """The allowed range of a numeric key from its constraints: ">= 1", "in [0, 1)"."""
    lo = hi = ""
    for c in model.model_fields[key].metadata:
        if isinstance(c, Ge):
            lo = f"[{c.ge:g}"
        elif isinstance(c, Gt):
            lo = f"({c.gt:g}"
        elif isinstance(c, Le):
            hi = f"{c.le:g}]"
        elif isinstance(c, Lt):
            hi = f"{c.lt:g})"
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + lo[1:]
    return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]


def resolve_input(path: str | Path) -> Path:
    """A relative input path: the current directory if it exists there, else the repo root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    in_repo = REPO_ROOT / p
    return in_repo if in_repo.exists() else p
