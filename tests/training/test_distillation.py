"""Knowledge distillation in the finetune/joint loss (value, parts, gradients, default off) and
in the classifier trainer (the teacher reads the clean face, the reader the decoded one)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.classifier import ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior
from training.config import DEFAULTS
from training.distributed import Dist
from training.input_codec import LearnedCodecChannel
from training.losses import FERCompressionLoss, distillation_kl
from training.recipe import flip_tta_logits
from training.trainers import ClassifierTask


def test_distillation_kl_known_value_and_zero_on_agreement() -> None:
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    temp = 2.0
    p_t = F.softmax(t / temp, 1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum() * temp**2
    assert distillation_kl(s, t, temp).item() == pytest.approx(expected.item(), rel=1e-6)
    assert distillation_kl(t, t, temp).item() == pytest.approx(0.0, abs=1e-7)


def _setup() -> tuple[FaceHyperprior, FERClassifier, FERClassifier, torch.Tensor, dict]:
    torch.manual_seed(0)
    codec = FaceHyperprior(CodecConfig(N=8, M=8)).train()
    student = FERClassifier(ClassifierConfig(width=8)).train()
    teacher = FERClassifier(ClassifierConfig(width=8)).eval().requires_grad_(False)
    x = torch.rand(2, 1, 48, 48)
    return codec, student, teacher, x, codec(x)


def test_kd_part_is_reported_and_weighted() -> None:
    _, student, teacher, x, out = _setup()
    y = torch.tensor([1, 2])
    logits, t_logits = student(out["x_hat"]), teacher(x)
    base = FERCompressionLoss.from_rd(0.01, lambda_c=1.0)
    kd = FERCompressionLoss(base.lambda_r, base.lambda_d, 1.0, kd_weight=0.7, kd_temperature=3.0)
    p0, p1 = base(out, x, logits, y), kd(out, x, logits, y, t_logits)
    assert {"loss", "bpp", "mse", "psnr", "ce", "acc", "kd"} <= set(p1)
    assert p1["kd"].item() == pytest.approx(distillation_kl(logits, t_logits, 3.0).item())
    assert p1["loss"].item() == pytest.approx(p0["loss"].item() + 0.7 * p1["kd"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="kd_weight"):
        kd(out, x, logits, y)  # no teacher logits


def test_kd_weight_zero_gives_exactly_the_paper_loss() -> None:
    _, student, teacher, x, out = _setup()
    y = torch.tensor([1, 2])
    logits = student(out["x_hat"])
    old = FERCompressionLoss.from_rd(0.01, lambda_c=1.0)(out, x, logits, y)
    new = FERCompressionLoss(1.0, 0.01 * 255**2, 1.0, kd_weight=0.0)(out, x, logits, y, teacher(x))
    assert torch.equal(new["loss"], old["loss"])  # bit for bit, not approximately
    assert "kd" in new  # still reported, for the ablation


def test_kd_gradient_reaches_codec_and_student_not_teacher() -> None:
    codec, student, teacher, x, out = _setup()
    teacher.requires_grad_(True)  # even a teacher left trainable gets nothing from the loss
    # lambda_c = 0 and no rate/distortion: any gradient comes from the KD term alone
    loss = FERCompressionLoss(0.0, 0.0, 0.0, kd_weight=1.0, kd_temperature=4.0)
    parts = loss(out, x, student(out["x_hat"]), None, teacher(x))
    parts["loss"].backward()
    assert codec.g_a[0].weight.grad is not None and codec.g_a[0].weight.grad.abs().sum() > 0
    assert student.net.fc.weight.grad is not None and student.net.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_classifier_step_adds_the_kd_of_the_teacher_on_the_clean_face(model_repo: Path) -> None:
    """The adapted reader's loss is CE(reader(decoded), y) + w * KL(teacher(clean) || reader):
    the teacher (as served, with flip TTA) reads the face before the codec, not after."""
    codec = str(model_repo / "tiny-codec" / "1")
    cfg = {**DEFAULTS["classifier"], "channels_last": False, "amp": False, "erase_prob": 0.0}
    cfg.update(input_codec="learned", input_codec_model=codec, kd_weight=0.7, kd_temperature=3.0)
    cfg.update(tta_flip=True, label_smoothing=0.0)
    torch.manual_seed(0)
    student = FERClassifier(ClassifierConfig(width=8)).train()
    teacher = FERClassifier(ClassifierConfig(width=8)).eval()
    before = copy.deepcopy(student)
    task = ClassifierTask(student, cfg, Dist(), 10, lambda x: x, teacher=teacher)
    x, y = torch.rand(4, 1, 48, 48), torch.tensor([0, 1, 2, 3])
    parts = task.train_step(x, y)

    decoded = LearnedCodecChannel(codec).train_batch(x)
    logits = before(decoded)
    kd = distillation_kl(logits, flip_tta_logits(teacher, x), 3.0)
    assert parts["kd"].item() == pytest.approx(kd.item(), rel=1e-5)
    expected = F.cross_entropy(logits, y) + 0.7 * kd
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(p.grad is None for p in teacher.parameters())  # frozen, nothing flows back
