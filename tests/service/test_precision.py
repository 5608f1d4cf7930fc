"""Inference precision: the setting's resolution, TTA as one forward, bf16 agreeing with fp32.

No timing here: the speed-ups are measured by benchmarks/precision_agreement.py.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import service.precision as precision
from core.artifacts import ModelRepository, bundled_models_dir, load_classifier, load_codec
from core.classifier import FERClassifier
from core.codec import FaceHyperprior
from core.face_codec import FaceCodec
from service.model_api import classify, synthesize
from service.precision import (
    cpu_has_native_bf16,
    cpuinfo_flags,
    inference_mode,
    prepare_input,
    resolve_precision,
)
from service.settings import Settings
from service.state import ServiceState
from tests.conftest import TINY_CLASSIFIER, TINY_CODEC
from tests.service.conftest import SettingsFactory, running


@pytest.fixture
def no_torch_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's CPU capability queries answer no (a CPU without bf16 units, as torch sees it)."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)


def _native(monkeypatch: pytest.MonkeyPatch, value: bool) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda device: value)


# -- detection ------------------------------------------------------------------------------


def test_cpuinfo_flags_parsed(tmp_path: Path) -> None:
    f = tmp_path / "cpuinfo"
    f.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n"
    )
    assert {"avx512_bf16", "amx_tile", "fpu"} <= cpuinfo_flags(f)
    assert cpuinfo_flags(tmp_path / "absent") == frozenset()


@pytest.mark.usefixtures("no_torch_query")
def test_cpu_bf16_from_cpuinfo_when_torch_says_no() -> None:
    assert not cpu_has_native_bf16(lambda: frozenset({"avx2", "avx512f", "avx512bw"}))
    assert not cpu_has_native_bf16(frozenset)  # no /proc/cpuinfo at all
    assert cpu_has_native_bf16(lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert cpu_has_native_bf16(lambda: frozenset({"amx_bf16", "amx_tile"}))


def test_cpu_bf16_from_torch_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16(frozenset)


def test_cpu_bf16_query_failing_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> bool:
        raise RuntimeError("cpuinfo failed")

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, boom, raising=False)
    assert not cpu_has_native_bf16(frozenset)
    assert cpu_has_native_bf16(lambda: frozenset({"avx512_bf16"}))


def test_cuda_bf16_is_native_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not precision.native_bf16("cuda")
    asked: list[bool] = []

    def supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return not including_emulation  # a GPU that would only emulate bf16 -> False

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert precision.native_bf16("cuda:0") and asked == [False]


# -- resolution -----------------------------------------------------------------------------


def test_auto_without_native_bf16_is_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    _native(monkeypatch, False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp32"


@pytest.mark.usefixtures("no_torch_query")
def test_auto_on_a_cpu_without_bf16_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole detection chain, not a patched ``native_bf16``: an AVX-512 CPU without
    AVX512-BF16 / AMX (e.g. Skylake-SP) serves fp32."""
    monkeypatch.setattr(precision, "cpuinfo_flags", lambda: frozenset({"avx512f", "avx512bw"}))
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision, "cpuinfo_flags", lambda: frozenset({"avx512_bf16"}))
    assert resolve_precision("auto", "cpu") == "bf16"


def test_auto_with_native_bf16_is_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _native(monkeypatch, True)
    assert resolve_precision("auto", "cpu") == "bf16"


def test_forced_values(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _native(monkeypatch, True)
    assert resolve_precision("fp32", "cpu") == "fp32"
    _native(monkeypatch, False)
    with caplog.at_level(logging.WARNING, logger="fercomp.service.precision"):
        assert resolve_precision("bf16", "cpu") == "bf16"  # honoured, but emulated: warned
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="inference precision"):
        resolve_precision("fp16", "cpu")  # type: ignore[arg-type]


def test_setting_from_env_and_validation(
    monkeypatch: pytest.MonkeyPatch, model_repo: Path, make_settings: SettingsFactory
) -> None:
    assert Settings(models_dir=model_repo).inference_precision == "auto"
    monkeypatch.setenv("FERCOMP_INFERENCE_PRECISION", "fp32")
    assert Settings(models_dir=model_repo).resolved_precision() == "fp32"
    with pytest.raises(ValidationError, match="inference_precision"):
        Settings(models_dir=model_repo, inference_precision="fp16")  # type: ignore[arg-type]
    _native(monkeypatch, False)
    assert make_settings(inference_precision="auto").resolved_precision() == "fp32"
    assert make_settings(inference_precision="bf16").resolved_precision() == "bf16"


def test_served_api_gets_the_resolved_precision(
    monkeypatch: pytest.MonkeyPatch, make_settings: SettingsFactory
) -> None:
    _native(monkeypatch, False)
    assert ServiceState.build(make_settings()).api.precision == "fp32"
    assert ServiceState.build(make_settings(inference_precision="bf16")).api.precision == "bf16"
    _native(monkeypatch, True)
    assert ServiceState.build(make_settings()).api.precision == "bf16"


def test_precision_logged_and_in_readyz(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(inference_precision="fp32")
    with (
        caplog.at_level(logging.INFO, logger="fercomp.service.model_api"),
        running(settings) as live,
    ):
        assert live.http.get("/readyz").json()["precision"] == "fp32"
    assert "inference precision fp32" in caplog.text


# -- TTA as one forward -----------------------------------------------------------------------


def test_tta_one_forward_equals_two_forwards_fp32() -> None:
    torch.manual_seed(0)
    model = FERClassifier(TINY_CLASSIFIER).eval()
    x = torch.rand(9, 1, 48, 48)
    batches: list[int] = []
    model.net.conv1.register_forward_hook(lambda m, args, out: batches.append(len(args[0])))
    p = classify(model, x, "fp32", tta_flip=True)
    assert batches == [18]  # both views of the 9 faces in one forward
    with torch.no_grad():
        two = (model.predict_proba(x) + model.predict_proba(x.flip(-1))) / 2
    assert p.dtype == torch.float32 and p.shape == (9, 7)
    torch.testing.assert_close(p, two, atol=1e-6, rtol=1e-5)
    assert torch.equal(p.argmax(1), two.argmax(1))
    # Mirror consistency, the point of flip TTA: a face and its mirror get the same answer.
    torch.testing.assert_close(classify(model, x.flip(-1), "fp32", True), p, atol=1e-6, rtol=0)
    no_tta = classify(model, x, "fp32", tta_flip=False)
    torch.testing.assert_close(no_tta, model.predict_proba(x), atol=1e-6, rtol=1e-5)


def test_bf16_outputs_are_float32() -> None:
    torch.manual_seed(0)
    model = FERClassifier(TINY_CLASSIFIER).eval()
    p = classify(model, torch.rand(4, 1, 48, 48), "bf16", tta_flip=True)
    assert p.dtype == torch.float32 and p.shape == (4, 7) and p.is_contiguous()
    torch.testing.assert_close(p.sum(1), torch.ones(4), atol=1e-5, rtol=0)


def _output_dtypes(modules: list[torch.nn.Module]) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for m in modules:
        m.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    return seen


def test_synthesis_bf16_only_in_its_inner_deconvolutions() -> None:
    """Under autocast g_s runs its transposed convolutions before the last in bf16; the GDNs
    and the last layer (it writes the image) in float32. Without autocast: nn.Sequential."""
    torch.manual_seed(0)
    g_s = FaceHyperprior(TINY_CODEC).eval().g_s
    y = torch.randn(3, TINY_CODEC.M, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(g_s(y), torch.nn.Sequential(*g_s)(y), atol=0, rtol=0)
        seen = _output_dtypes(list(g_s))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = g_s(y)
    bf, f32 = torch.bfloat16, torch.float32
    assert seen == [bf, f32, bf, f32, bf, f32, f32] and x.dtype == f32


def test_classifier_ends_in_fp32_under_autocast() -> None:
    torch.manual_seed(0)
    model = FERClassifier(TINY_CLASSIFIER).eval()
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.inference_logits(x), model(x), atol=0, rtol=0)
        net = model.net
        seen = _output_dtypes([net.conv1, net.layer1, net.layer4, net.fc])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.inference_logits(x)
    assert seen == [torch.float32, torch.bfloat16, torch.bfloat16, torch.float32]


def test_bf16_runs_the_classifier_channels_last() -> None:
    """A 1-channel face's layout is ambiguous, so the weights carry channels_last: after the
    first bf16 call the residual stages see NHWC tensors; fp32 leaves a model as it is."""
    torch.manual_seed(0)
    model = FERClassifier(TINY_CLASSIFIER).eval()
    x = torch.rand(3, 1, 48, 48)
    layouts: list[bool] = []
    model.net.layer1.register_forward_hook(
        lambda m, args, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last))
    )
    p32 = classify(model, x, "fp32", tta_flip=True)
    assert layouts == [False] and model.net.layer1[0].conv1.weight.is_contiguous()
    classify(model, x, "bf16", tta_flip=True)
    classify(model, x, "bf16", tta_flip=True)  # converted once; the second call finds it so
    assert layouts == [False, True, True]
    w = model.net.layer1[0].conv1.weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    torch.testing.assert_close(classify(model, x, "bf16", True), p32, atol=0.05, rtol=0)


def test_bf16_weights_give_autocasts_results_bit_for_bit() -> None:
    """bf16 prepares the residual stages' convolutions in bf16 (autocast would cast them to the
    same values on every call); the stem, the head and BatchNorm parameters stay float32."""
    torch.manual_seed(0)
    model = FERClassifier(TINY_CLASSIFIER).eval()
    reference = copy.deepcopy(model).to(memory_format=torch.channels_last)  # float32 weights
    x = torch.rand(5, 1, 48, 48)
    served = classify(model, x, "bf16", tta_flip=True)
    net = model.net
    assert net.layer1[0].conv1.weight.dtype == torch.bfloat16
    assert net.layer4[0].downsample is not None
    assert net.layer4[0].downsample[0].weight.dtype == torch.bfloat16
    assert net.layer1[0].bn1.weight.dtype == torch.float32
    assert net.conv1.weight.dtype == net.fc.weight.dtype == torch.float32
    views = torch.cat([x, x.flip(-1)])
    with inference_mode("bf16", "cpu"):
        p = reference.predict_proba(prepare_input(views, "bf16")).float()
    assert torch.equal(served, (p[:5] + p[5:]) / 2)


def test_bf16_synthesis_converts_g_s_only() -> None:
    """Channels_last for g_s's weights, never for the hyper path (h_s, the entropy models)."""
    torch.manual_seed(0)
    net = FaceHyperprior(TINY_CODEC).eval()
    net.update(force=True)
    codec = FaceCodec(net, b"\x00\x00\x00\x01")
    hyper = [codec.model.h_s, codec.model.h_a]
    x = synthesize(codec, torch.randn(2, TINY_CODEC.M, 3, 3), 48, 48, "bf16")
    assert x.dtype == torch.float32 and x.shape == (2, 1, 48, 48)
    assert codec.model.g_s[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(t.is_contiguous() for m in hyper for t in m.state_dict().values())


# -- bf16 vs fp32 on real faces ---------------------------------------------------------------


def test_bf16_agrees_with_fp32_on_real_faces(fer_npz: Path) -> None:
    """The default pair, 96 PublicTest faces: served predictions at bf16 match fp32 (the full
    split: >= 99.5 % for every release pair, docs/MODELS.md); the latents they start from are
    the same tensor (the entropy path has one precision)."""
    from training.data import load_dataset
    from training.eval import to_faces

    repo = ModelRepository(bundled_models_dir())
    defaults = repo.defaults()
    codec, _ = load_codec(repo.path(defaults["codec"]))
    clf, _ = load_classifier(repo.path(defaults["classifier"]))
    images, _ = load_dataset(fer_npz, "PublicTest")
    faces = to_faces(np.asarray(images[:96]))
    x = torch.from_numpy(faces).float().div_(255.0).unsqueeze(1)
    y_hat = codec.decode_latents([codec.parse(p) for p in codec.encode(x)])
    out = {}
    for prec in ("fp32", "bf16"):
        images_p = synthesize(codec, y_hat, 48, 48, prec)
        assert images_p.dtype == torch.float32 and images_p.shape == (96, 1, 48, 48)
        out[prec] = (images_p, classify(clf, images_p, prec, True))
    (x32, p32), (x16, p16) = out["fp32"], out["bf16"]
    assert not torch.equal(x32, x16), "bf16 synthesis ran in fp32"
    assert float((x32 - x16).abs().mean()) < 2e-3  # ~ a quarter of an 8-bit grey level
    assert p16.dtype == torch.float32
    assert float((p32 - p16).abs().max()) < 0.1
    disagree = int((p32.argmax(1) != p16.argmax(1)).sum())
    assert disagree <= 1, f"{disagree}/96 served predictions differ between bf16 and fp32"
