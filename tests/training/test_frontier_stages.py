"""The issue-11 stages end to end on tiny data: latent-alignment and KD joint training, and the
WebP-adapted classifier (configs/tiny/*.toml, a few CPU steps each)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from core import bitstream
from core.artifacts import load_classifier, load_codec
from tests.training.trainer_runs import REPO, train_cli
from training import baselines as bl
from training.config import load_config
from training.input_codec import CodecChannel, LearnedCodecChannel

TINY = REPO / "configs" / "tiny"


def _sets(**kv: str) -> list[str]:
    return [a for k, v in kv.items() for a in ("--set", f'{k}="{v}"')]


def _last_log_row(run: Path) -> dict[str, str]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]


def test_joint_in_latent_alignment_exports_an_align4_codec(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    args = _sets(
        data=str(tiny_data),
        init_codec=str(model_repo / "tiny-codec" / "1"),  # a default-aligned codec
        classifier=str(model_repo / "tiny-classifier" / "1"),
        export_dir=str(tmp_path / "models"),
    )
    rc = train_cli("joint", "--config", TINY / "joint-align4.toml", "--out", tmp_path / "r", *args)
    assert rc == 0
    codec, m = load_codec(tmp_path / "models" / "tiny-joint-a4" / "1")
    assert m.architecture["align_log2"] == 4 and codec.align_log2 == 4
    (p,) = codec.encode(torch.rand(1, 1, 48, 48))
    assert bitstream.parse(p).header.padding == (0, 0)
    assert tuple(codec.decode_latents([codec.parse(p)]).shape[-2:]) == (3, 3)


def test_joint_with_distillation_logs_the_kd_part(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    args = _sets(
        data=str(tiny_data),
        init_codec=str(model_repo / "tiny-codec" / "1"),
        classifier=str(model_repo / "tiny-classifier" / "1"),
        kd_teacher=str(model_repo / "tiny-classifier" / "2"),
        export_dir=str(tmp_path / "models"),
    )
    rc = train_cli("joint", "--config", TINY / "joint-kd.toml", "--out", tmp_path / "r", *args)
    assert rc == 0
    row = _last_log_row(tmp_path / "r")
    assert float(row["train_kd"]) >= 0.0 and float(row["val_kd"]) >= 0.0
    _, m = load_codec(tmp_path / "models" / "tiny-joint-kd" / "1")
    assert m.training["config"]["kd_weight"] == 1.0
    assert load_classifier(tmp_path / "models" / "tiny-joint-kd-clf" / "1")[1].kind == "classifier"


def test_kd_config_needs_a_teacher() -> None:
    with pytest.raises(ValueError, match="kd_teacher"):
        load_config("joint", TINY / "joint-kd.toml", ['kd_teacher=""'])
    with pytest.raises(ValueError, match="kd_temperature"):
        load_config("joint", TINY / "joint-kd.toml", ["kd_temperature=0.0"])


def _train_adapted(
    config: str, tmp_path: Path, tiny_data: Path, model_repo: Path, *more: str, **extra: str
) -> dict[str, object]:
    """Fine-tune the tiny classifier with configs/tiny/CONFIG (string keys as ``extra``, other
    ``--set`` arguments as ``more``); the exported training config."""
    args = _sets(
        data=str(tiny_data),
        init_classifier=str(model_repo / "tiny-classifier" / "1"),
        export_dir=str(tmp_path / "models"),
        **extra,
    ) + list(more)
    rc = train_cli("classifier", "--config", TINY / config, "--out", tmp_path / "r", *args)
    assert rc == 0
    name = load_config("classifier", TINY / config)["name"]
    model, m = load_classifier(tmp_path / "models" / name / "1")
    assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    return dict(m.training["config"])


def test_webp_adapted_classifier_trains_on_decoded_faces(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    cfg = _train_adapted("classifier-webp.toml", tmp_path, tiny_data, model_repo)
    assert cfg["input_codec"] == "webp"
    assert cfg["webp_quality_range"] == [5, 60]


def test_classifier_adapted_to_a_learned_codec_trains_on_its_decoded_faces(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    codec_dir = str(model_repo / "tiny-codec" / "1")
    cfg = _train_adapted(
        "classifier-learned.toml", tmp_path, tiny_data, model_repo, input_codec_model=codec_dir
    )
    assert cfg["input_codec"] == "learned"
    assert cfg["input_codec_model"] == codec_dir


def test_adapted_classifier_distils_from_a_clean_face_teacher(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    teacher = str(model_repo / "tiny-classifier" / "1")
    codec = str(model_repo / "tiny-codec" / "1")
    args = [*_sets(kd_teacher=teacher, input_codec_model=codec), "--set", "kd_weight=0.5"]
    cfg = _train_adapted("classifier-learned.toml", tmp_path, tiny_data, model_repo, *args)
    assert (cfg["kd_teacher"], cfg["kd_weight"]) == (teacher, 0.5)
    assert float(_last_log_row(tmp_path / "r")["train_kd"]) > 0


def test_learned_channel_is_the_served_round_trip(model_repo: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 48, 48, generator=g)
    ch = LearnedCodecChannel(str(model_repo / "tiny-codec" / "1"))
    out = ch.train_batch(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    # the image the server decodes from the bytes a client sends of the 8-bit face
    codec = load_codec(model_repo / "tiny-codec" / "1")[0]
    sent = codec.encode((x * 255).round() / 255)
    assert torch.equal(out, torch.stack(codec.decode(sent)))
    assert torch.equal(ch.eval_batch(x), out)


@pytest.mark.parametrize(
    "override, match",
    [
        ('input_codec_model=""', "input_codec_model"),  # learned without a codec
        ('input_codec="none"', "input_codec_model"),  # a codec that nothing reads
        ('input_codec="webp"', "input_codec_model"),
        ("kd_weight=1.0", "kd_teacher"),  # distillation without a teacher
    ],
)
def test_learned_input_config_is_checked(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_config("classifier", TINY / "classifier-learned.toml", [override])


@pytest.mark.parametrize(
    "override, match",
    [
        ('input_codec="jpeg2000"', "input_codec"),
        ("webp_quality_range=[60, 5]", "webp_quality_range"),
        ("webp_quality_range=[0, 50]", "webp_quality_range"),
        ("webp_quality_range=[5]", "webp_quality_range"),
    ],
)
def test_webp_config_is_checked(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_config("classifier", TINY / "classifier-webp.toml", [override])


def test_distillation_refuses_mixed_batches() -> None:
    kd = ['kd_teacher="models/fer-resnet18/13"', "kd_weight=1.0"]
    assert load_config("classifier", TINY / "classifier-webp.toml", kd)["kd_weight"] == 1.0
    with pytest.raises(ValueError, match='mix = "none"'):
        load_config("classifier", TINY / "classifier-webp.toml", [*kd, 'mix="mixup"'])


def test_channel_draws_a_quality_per_face_and_validates_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(8, 1, 6, 6, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(48, 48), mode="bilinear")
    ch = CodecChannel("webp", (5, 60))
    torch.manual_seed(1)
    out = ch.train_batch(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal((out * 255).round(), out * 255)  # 8-bit pixels, as a receiver holds
    assert not torch.equal(out, x)
    # exactly what the eval's WebP round trip gives at the qualities it drew
    torch.manual_seed(1)
    q = torch.randint(5, 61, (8,)).tolist()
    faces = (x[:, 0] * 255).round().to(torch.uint8).numpy()
    expected, _ = bl.roundtrip_each(faces, "webp", q)
    assert np.array_equal((out[:, 0] * 255).round().to(torch.uint8).numpy(), expected)
    assert torch.equal(ch.eval_batch(x), ch.eval_batch(x))


def test_roundtrip_each_matches_roundtrip_at_one_quality() -> None:
    rng = np.random.default_rng(0)
    faces = np.kron(rng.integers(0, 256, (4, 12, 12), dtype=np.uint8), np.ones((4, 4), np.uint8))
    a, sa = bl.roundtrip(faces, "webp", 30)
    b, sb = bl.roundtrip_each(faces, "webp", [30] * 4)
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    _, mixed = bl.roundtrip_each(faces, "webp", [5, 90, 5, 90])
    assert mixed[1] > mixed[0] and mixed[3] > mixed[2]
    with pytest.raises(ValueError, match="qualities for"):
        bl.roundtrip_each(faces, "webp", [30])


def test_realign_keeps_the_weights_and_changes_only_the_alignment(
    tmp_path: Path, model_repo: Path
) -> None:
    from cli.main import main
    from core.artifacts import load_codec_model

    src = model_repo / "tiny-codec" / "1"
    assert main(["realign", str(src), "--align", "4", "--version", "9",
                 "--export-dir", str(tmp_path)]) == 0  # fmt: skip
    assert main(["realign", str(src), "--align", "6", "--version", "8",
                 "--export-dir", str(tmp_path)]) == 0  # fmt: skip
    a4, m4 = load_codec_model(tmp_path / "tiny-codec" / "9")
    _, m6 = load_codec_model(tmp_path / "tiny-codec" / "8")
    base, m = load_codec_model(src)
    assert m4.architecture["align_log2"] == 4 and m4.codec_id != m.codec_id
    assert m6.sha256 == m.sha256  # default alignment: the very same file as the source
    assert m4.training["realigned_from"] == "tiny-codec/1" and m4.metrics == {}
    for k, v in base.state_dict().items():
        assert torch.equal(a4.state_dict()[k], v), k
