"""Training configs: the typed models, the shipped TOML files, ``--set`` and the error messages."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from cli.main import main
from training.config import (
    DEFAULTS,
    TRAINERS,
    ConfigError,
    config_model,
    load_config,
    parse_config,
)
from training.config_schema import CodecTrainingConfig

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs").rglob("*.toml"))


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_validates(path: Path) -> None:
    data = tomllib.loads(path.read_text())
    # every config names its trainer; the file name may describe a variant (classifier-w32)
    trainer = data["trainer"]
    assert path.stem.startswith(trainer), path
    cfg = load_config(trainer, path)
    assert list(cfg) == list(DEFAULTS[trainer])  # every key, in config.json's order
    assert {k: cfg[k] for k in data if k != "trainer"} == {
        k: v for k, v in data.items() if k != "trainer"
    }


def test_shipped_configs_cover_every_trainer() -> None:
    assert len(SHIPPED) >= 8
    assert {tomllib.loads(p.read_text())["trainer"] for p in SHIPPED} == set(TRAINERS)


def test_unknown_key_is_refused_with_a_close_match(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config("codec", overrides=["lamda=0.1"])
    assert str(e.value) == (
        "unknown config key 'lamda' in --set for the codec trainer: did you mean 'lmbda'?"
    )
    path = _toml(tmp_path, 'trainer = "joint"\nclassifer_lr = 1e-3\n')
    with pytest.raises(ConfigError, match=rf"'classifer_lr' in {path} .* 'classifier_lr'\?"):
        load_config("joint", path)


def test_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("classifier", overrides=["zzz=1"])
    msg = str(e.value)
    assert msg.startswith("unknown config key 'zzz' in --set for the classifier trainer: known")
    assert "ema_decay" in msg and "lmbda" not in msg  # the classifier's keys only


def test_a_key_of_another_trainer_is_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'lambda_clean'"):
        load_config("finetune", overrides=["lambda_clean=0.5", "init_codec=a", "classifier=b"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lmbda=high", "config key 'lmbda' in --set must be a float, got 'high'"),
        ("epochs=1.5", "config key 'epochs' in --set must be an int, got 1.5"),
        ("amp=1", "config key 'amp' in --set must be a bool (true or false) or 'auto', got 1"),
        ("version=2", "config key 'version' in --set must be a string, got 2"),
        ("epochs=true", "config key 'epochs' in --set must be an int, got True"),
    ],
)
def test_wrong_type_names_the_key_and_the_expected_type(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config("codec", overrides=[override])
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("trainer", "override", "expected"),
    [
        ("codec", "epochs=0", "be >= 1, got 0"),
        ("codec", "lmbda=-0.1", "be > 0, got -0.1"),
        ("codec", "val_fraction=1.0", "be in [0, 1), got 1.0"),
        ("classifier", "erase_prob=1.5", "be in [0, 1], got 1.5"),
        ("classifier", 'name=""', "not be empty"),
    ],
)
def test_out_of_range_value_names_the_key_and_the_range(
    trainer: str, override: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(trainer, overrides=[override])
    key = override.split("=")[0]
    assert str(e.value) == f"config key {key!r} in --set must {expected}"


def test_a_bad_choice_lists_the_choices_and_the_closest(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'optimizer = "adamm"\n')
    with pytest.raises(ConfigError) as e:
        load_config("classifier", path)
    assert str(e.value) == (
        f"config key 'optimizer' in {path} must be 'adam', 'adamw' or 'sgd', got 'adamm' "
        "(did you mean 'adam'?)"
    )


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("codec", overrides=["epochs=0", "lr=fast", "lamda=1"])
    assert str(e.value).count("; ") == 2


@pytest.mark.parametrize("trainer", ["finetune", "joint"])
def test_task_trainers_need_their_artifacts(trainer: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(trainer, overrides=["classifier=models/fer-resnet18/1"])
    assert str(e.value) == f'the {trainer} trainer needs init_codec = "ARTIFACT_DIR"'


def test_overrides_win_over_the_file_and_ints_become_floats(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'trainer = "codec"\ndescription = "x"\nlmbda = 0.5\nepochs = 2\n')
    cfg = load_config("codec", path, ["lmbda=1", "amp=true", "name=bare-word"])
    assert cfg["lmbda"] == 1.0 and isinstance(cfg["lmbda"], float)
    assert cfg["epochs"] == 2 and cfg["amp"] is True and cfg["name"] == "bare-word"
    assert "trainer" not in cfg and "description" not in cfg


def test_file_of_another_trainer_and_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a 'codec' config, not 'classifier'"):
        load_config("classifier", _toml(tmp_path, 'trainer = "codec"\n'))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("codec", tmp_path / "missing.toml")
    assert main(["train", "codec", "--config", str(tmp_path / "missing.toml")]) == 2
    assert main(["train", "codec", "--set", "lamda=1"]) == 2


@pytest.mark.parametrize("trainer", TRAINERS)
def test_a_recorded_config_validates_again(trainer: str) -> None:
    """config.json / a manifest's training.config (JSON) loads back into the same config."""
    cfg = load_config(
        trainer, overrides=["init_codec=a", "classifier=b"][: 2 * (trainer != "classifier")]
    )
    again = parse_config(trainer, json.loads(json.dumps(cfg))).model_dump()
    assert again == cfg and list(again) == list(cfg)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_key_is_documented(trainer: str) -> None:
    undocumented = [k for k, f in config_model(trainer).model_fields.items() if not f.description]
    assert undocumented == []


def test_the_stages_extend_each_other() -> None:
    codec, finetune, joint = (set(DEFAULTS[t]) for t in ("codec", "finetune", "joint"))
    assert codec < finetune < joint
    assert not {"lambda_c", "lambda_clean"} & codec
    assert issubclass(config_model("joint"), CodecTrainingConfig)


def test_ferplus_soft_targets_refuse_ferplus_labels() -> None:
    with pytest.raises(ConfigError) as e:
        load_config("classifier", overrides=["ferplus_soft=0.4", 'label_source="ferplus"'])
    assert "label_source must be fer2013" in str(e.value)
    assert load_config("classifier", overrides=["ferplus_soft=0.4"])["ferplus_soft"] == 0.4


def test_a_rate_target_needs_a_rate_weight_to_adapt() -> None:
    arts = ["init_codec=models/c/1", "classifier=models/k/1", "target_bpp=0.2"]
    with pytest.raises(ConfigError) as e:
        load_config("joint", overrides=[*arts, "lambda_r=0"])
    assert "target_bpp adapts lambda_r multiplicatively" in str(e.value)
    assert load_config("joint", overrides=arts)["target_bpp"] == 0.2
