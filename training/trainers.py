"""The four trainers as ``Task`` objects for ``training.loop.fit``.

- ``ClassifierTask``: FERClassifier on uncompressed faces, CE with label smoothing, bf16 AMP.
- ``CodecTask``: FaceHyperprior with the RD loss; two optimizers exactly as CompressAI's
  ``examples/train.py`` (parameters named ``*.quantiles`` -> aux optimizer on ``aux_loss()``,
  everything else -> main optimizer), gradient clipping at ``clip_grad``. Always fp32: the
  entropy models' likelihoods are too sensitive for reduced precision.
- ``CodecTask`` with a classifier and ``train_classifier=False`` is **finetune** (the paper's
  first stage: codec trained with the FER loss, classifier frozen in eval mode);
  with ``train_classifier=True`` it is **joint** (both trained; the classifier has its own
  learning rate and an extra ``lambda_clean`` CE on uncompressed faces).
- finetune / joint with a ``teacher``: knowledge distillation from a frozen classifier on the
  uncompressed face to the classifier on the decoded one (``kd_weight``, ``training/losses.py``).
- ``ClassifierTask`` with a ``teacher``: the same distillation for a reader adapted to a codec
  held fixed (``input_codec``): the teacher reads the augmented clean face, the student its
  decoded version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from core.classifier import FERClassifier
from core.codec import FaceHyperprior, bits_per_pixel
from training.distributed import Dist
from training.input_codec import make_channel
from training.losses import FERCompressionLoss, RateDistortionLoss, distillation_kl
from training.optim import make_optimizer, make_scheduler
from training.precision import input_format, to_memory_format, train_autocast
from training.rate_control import RateController, rate_constrained_score
from training.recipe import (
    ema_weights,
    flip_tta_logits,
    make_ema,
    mix_batch,
    mixed_cross_entropy,
    random_erase,
)

Augment = Callable[[Tensor], Tensor]


def _wrap(module: nn.Module, d: Dist, ignore: list[str] | None = None) -> nn.Module:
    if not d.enabled:
        return module
    if ignore:
        # Parameters updated outside the DDP forward (entropy-bottleneck quantiles, trained
        # on aux_loss only): DDP must not wait for their gradients; we all-reduce them.
        DDP._set_params_and_buffers_to_ignore_for_model(module, ignore)
    ids = [d.device.index] if d.device.type == "cuda" else None
    return DDP(module, device_ids=ids)


def _frozen(teacher: FERClassifier | None, d: Dist) -> FERClassifier | None:
    """A KD teacher on the run's device, in eval mode and without gradients (or None)."""
    return None if teacher is None else teacher.to(d.device).eval().requires_grad_(False)


def _schedule(opt: Optimizer, cfg: dict[str, Any], steps_per_epoch: int) -> LRScheduler:
    total = cfg["epochs"] * steps_per_epoch
    warm = round(cfg["warmup_epochs"] * steps_per_epoch)
    return make_scheduler(opt, cfg["scheduler"], total, warm)


class ClassifierTask:
    """Classifier on uncompressed faces: CE with label smoothing, optional random erasing,
    mixup/cutmix and weight EMA (``training/recipe.py``). Validation reports the raw weights
    (``acc``), and with EMA on also ``acc_ema``; ``acc_tta`` / ``acc_ema_tta`` average the face
    and its mirror, as the server does with flip TTA. The score (what selects the exported
    epoch) is the accuracy of what is exported and served."""

    kind = "classifier"

    def __init__(
        self,
        model: FERClassifier,
        cfg: dict[str, Any],
        d: Dist,
        steps_per_epoch: int,
        augment: Augment,
        teacher: FERClassifier | None = None,
    ) -> None:
        self.cl = cfg["channels_last"]
        self.model = to_memory_format(model.to(d.device), self.cl)
        self.net = _wrap(self.model, d)
        self.d, self.augment, self.cfg = d, augment, cfg
        self.amp = cfg["amp"]
        self.smoothing = cfg["label_smoothing"]
        # input_codec = "webp": train and validate on faces a WebP receiver decodes.
        self.channel = make_channel(cfg)
        # A frozen teacher reads the clean face the channel degrades (config_schema: only
        # with kd_weight > 0 and without batch mixing).
        self.teacher = _frozen(teacher, d)
        opt = make_optimizer(
            self.model.parameters(),
            cfg["optimizer"],
            cfg["lr"],
            cfg["weight_decay"],
            cfg["momentum"],
            cfg["nesterov"],
        )
        self.modules: dict[str, nn.Module] = {"classifier": self.model}
        self.ema: nn.Module | None = None
        if cfg["ema_decay"] > 0:
            self.ema = make_ema(self.model, cfg["ema_decay"])
            self.modules["ema"] = self.ema
        self.optimizers: dict[str, Optimizer] = {"main": opt}
        self.schedulers: dict[str, LRScheduler] = {"main": _schedule(opt, cfg, steps_per_epoch)}

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()
        if self.ema is not None:
            self.ema.eval()

    def _teacher_logits(self, clean: Tensor) -> Tensor:
        """What the teacher serves for the clean face: with flip TTA when the run selects so."""
        assert self.teacher is not None
        with torch.no_grad():
            clean = input_format(clean, self.cl)
            if self.cfg["tta_flip"]:
                return flip_tta_logits(self.teacher, clean)
            return self.teacher(clean).float()

    def train_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        x = random_erase(self.augment(x), self.cfg["erase_prob"])
        teacher = self._teacher_logits(x) if self.teacher is not None else None
        if self.channel is not None:
            x = self.channel.train_batch(x)
        x, ya, yb, lam = mix_batch(
            x, y, self.cfg["mix"], self.cfg["mix_alpha"], self.cfg["mix_prob"]
        )
        with train_autocast(self.amp, self.d.device):
            logits = self.net(input_format(x, self.cl))
        loss = mixed_cross_entropy(logits.float(), ya, yb, lam, self.smoothing)
        parts: dict[str, Tensor] = {}
        if teacher is not None:
            kd = distillation_kl(logits, teacher, self.cfg["kd_temperature"])
            loss = loss + self.cfg["kd_weight"] * kd
            parts["kd"] = kd.detach()
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.schedulers["main"].step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)  # type: ignore[operator]
        hard = ya if ya.ndim == 1 else ya.argmax(1)  # soft targets: their most likely class
        acc = (logits.detach().argmax(1) == hard).float().mean()
        return {"loss": loss.detach(), "acc": acc, **parts}

    def eval_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        # Validation in float32: the figures must be those of the exported (fp32/fp16) model.
        if self.channel is not None:
            x = self.channel.eval_batch(x)
        x = input_format(x, self.cl)
        logits = self.model(x).float()
        out = {
            "loss": F.cross_entropy(logits, y),
            "acc": (logits.argmax(1) == y).float().mean(),
            "acc_tta": (flip_tta_logits(self.model, x, logits).argmax(1) == y).float().mean(),
        }
        if self.ema is not None:
            ema_logits = self.ema(x).float()
            out["acc_ema"] = (ema_logits.argmax(1) == y).float().mean()
            tta = flip_tta_logits(self.ema, x, ema_logits)
            out["acc_ema_tta"] = (tta.argmax(1) == y).float().mean()
        return out

    def served_key(self) -> str:
        key = "acc_ema" if self.ema is not None else "acc"
        return key + ("_tta" if self.cfg["tta_flip"] else "")

    def export_state(self, state: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        """The weights to export from a selected state: the EMA when it is on."""
        return ema_weights(state["ema"]) if self.ema is not None else state["classifier"]

    def score(self, val: dict[str, float]) -> float:
        return val[self.served_key()]

    def postfix(self, m: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{m.get('loss', 0):.3f}", "acc": f"{m.get('acc', 0):.3f}"}


def split_codec_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(main, aux) as in CompressAI's examples/train.py: aux = names ending in '.quantiles'."""
    main: list[nn.Parameter] = []
    aux: list[nn.Parameter] = []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (aux if n.endswith(".quantiles") else main).append(p)
    return main, aux


class CodecTask:
    """RD training (``classifier=None``), finetune (frozen classifier) or joint training."""

    def __init__(
        self,
        codec: FaceHyperprior,
        cfg: dict[str, Any],
        d: Dist,
        steps_per_epoch: int,
        augment: Augment,
        classifier: FERClassifier | None = None,
        train_classifier: bool = False,
        kind: str = "codec",
        teacher: FERClassifier | None = None,
    ) -> None:
        self.kind, self.d, self.augment, self.cfg = kind, d, augment, cfg
        # Frozen for good: eval mode (BN statistics fixed), no gradients, not checkpointed.
        self.teacher = _frozen(teacher, d)
        # channels_last is fp32 throughout (1.3x per RD step on this CPU, benchmarks/
        # train_step.py); the codec never runs under bf16 autocast: its likelihoods set the rate.
        self.cl = cfg["channels_last"]
        self.codec = to_memory_format(codec.to(d.device), self.cl)
        quantiles = [n for n, _ in codec.named_parameters() if n.endswith(".quantiles")]
        self.codec_net = _wrap(self.codec, d, ignore=quantiles)
        main, aux = split_codec_params(self.codec)
        self.aux_params = aux
        self.main_params = main
        self.modules: dict[str, nn.Module] = {"codec": self.codec}
        groups: list[dict[str, Any]] = [{"params": main, "lr": cfg["lr"]}]
        self.classifier = classifier
        self.train_classifier = train_classifier
        self.clf_net: nn.Module | None = None
        if classifier is not None:
            self.classifier = classifier.to(d.device)
            if train_classifier:
                self.modules["classifier"] = self.classifier
                self.clf_net = _wrap(self.classifier, d)
                groups.append(
                    {
                        "params": list(self.classifier.parameters()),
                        "lr": cfg["classifier_lr"],
                        "weight_decay": cfg["classifier_weight_decay"],
                    }
                )
            else:  # finetune: a fixed judge of the reconstructions
                self.classifier.eval().requires_grad_(False)
                self.clf_net = self.classifier
        if kind == "codec":
            self.loss: nn.Module = RateDistortionLoss(cfg["lmbda"])
        else:
            # lambda_d < 0 is relative: |lambda_d| * lmbda * 255^2 (-1 = the RD loss's weight),
            # so one config sweeps lmbda and keeps the same distortion/rate balance shift.
            base = FERCompressionLoss.from_rd(cfg["lmbda"], cfg["lambda_c"], cfg["lambda_r"])
            lambda_d = cfg["lambda_d"] if cfg["lambda_d"] >= 0 else -cfg["lambda_d"] * base.lambda_d
            self.loss = FERCompressionLoss(
                base.lambda_r,
                lambda_d,
                base.lambda_c,
                cfg["label_smoothing"],
                cfg["kd_weight"] if teacher is not None else 0.0,
                cfg["kd_temperature"],
            )
        # target_bpp: lambda_r becomes a checkpointed multiplier held to a rate (rate_control.py)
        self.rate: RateController | None = None
        if kind != "codec" and cfg.get("target_bpp", 0.0) > 0:
            self.rate = RateController(cfg["lambda_r"], cfg["target_bpp"], cfg["rate_gain"])
            self.modules["rate"] = self.rate
        opt = make_optimizer(groups, cfg["optimizer"], cfg["lr"], cfg["weight_decay"])
        aux_opt = torch.optim.Adam(aux, lr=cfg["aux_lr"])
        self.optimizers: dict[str, Optimizer] = {"main": opt, "aux": aux_opt}
        self.schedulers: dict[str, LRScheduler] = {"main": _schedule(opt, cfg, steps_per_epoch)}

    def train(self) -> None:
        self.codec.train()
        if self.classifier is not None:
            self.classifier.train(self.train_classifier)

    def eval(self) -> None:
        self.codec.eval()
        if self.classifier is not None:
            self.classifier.eval()

    def _classify(
        self, net: nn.Module, x_hat: Tensor, x: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Logits on x_hat (and on clean x in the same forward, so BN sees one batch)."""
        inp = x_hat if x is None else torch.cat([x_hat, x])
        with train_autocast(self.cfg["amp"], self.d.device):
            logits = net(inp).float()
        if x is None:
            return logits, None
        return logits[: len(x_hat)], logits[len(x_hat) :]

    def _forward(
        self, codec: nn.Module, clf: nn.Module | None, x: Tensor, y: Tensor, clean: bool
    ) -> dict[str, Tensor]:
        out = codec(input_format(x, self.cl))
        if clf is None:
            return dict(self.loss(out, x))
        want_clean = clean and self.train_classifier and self.cfg["lambda_clean"] > 0
        logits, logits_clean = self._classify(clf, out["x_hat"], x if want_clean else None)
        teacher_logits = None
        if self.teacher is not None:
            with torch.no_grad():  # fp32: soft targets at full precision
                teacher_logits = self.teacher(x).float()
        parts = dict(self.loss(out, x, logits, y, teacher_logits))
        if logits_clean is not None:
            ce_clean = F.cross_entropy(logits_clean, y)
            parts["ce_clean"] = ce_clean
            parts["acc_clean"] = (logits_clean.detach().argmax(1) == y).float().mean()
            parts["loss"] = parts["loss"] + self.cfg["lambda_clean"] * ce_clean
        return parts

    def train_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        sent = x  # the faces as a client sends them: what the rate target is about
        x = self.augment(x)
        opt, aux_opt = self.optimizers["main"], self.optimizers["aux"]
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        if self.rate is not None:
            self.loss.lambda_r = self.rate.lambda_r
        parts = self._forward(self.codec_net, self.clf_net, x, y, clean=True)
        parts["loss"].backward()
        if self.cfg["clip_grad"] > 0:
            torch.nn.utils.clip_grad_norm_(self.main_params, self.cfg["clip_grad"])
        opt.step()
        self.schedulers["main"].step()
        aux_loss = self.codec.aux_loss()
        aux_loss.backward()
        if self.d.enabled:  # aux grads are computed outside DDP: average them ourselves
            for p in self.aux_params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.d.world
        aux_opt.step()
        parts["aux"] = aux_loss.detach()
        if self.rate is not None:
            bpp = self._coded_bpp(sent)
            if self.d.enabled:  # every rank steps the multiplier on the same, global rate
                dist.all_reduce(bpp)
                bpp /= self.d.world
            parts["bpp_coded"] = bpp
            parts["lambda_r"] = torch.tensor(self.rate.update(bpp))
        return {k: v.detach() for k, v in parts.items()}

    @torch.no_grad()
    def _coded_bpp(self, x: Tensor) -> Tensor:
        """The rate with rounded latents, as coded (and as validation measures it), of the
        faces before augmentation. The training forward's additive-noise rate runs ~30 % above
        it at <= 80 B (0.245 vs 0.187 bpp), and the augmented faces coded ~10 % cheaper than
        the faces sent in one run (0.195 vs 0.214 bpp): holding either to the target would
        miss the real rate by as much."""
        self.codec.eval()
        try:
            out = self.codec(input_format(x, self.cl))
        finally:
            self.codec.train()
        return bits_per_pixel(out["likelihoods"], x.shape[-2] * x.shape[-1]).detach()

    def eval_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        # Eval mode: latents are rounded, as in real coding; rate is still the model estimate.
        parts = self._forward(self.codec, self.classifier, x, y, clean=False)
        if self.train_classifier and self.classifier is not None:
            with train_autocast(self.cfg["amp"], self.d.device):
                logits = self.classifier(x).float()
            parts["acc_clean"] = (logits.argmax(1) == y).float().mean()
        if self.rate is not None:  # -> val_lambda_r in the log and the exported manifest
            parts["lambda_r"] = torch.tensor(self.rate.lambda_r)
        return parts

    def score(self, val: dict[str, float]) -> float:
        # The loss moves with lambda_r under a rate target: select on accuracy at the rate.
        if self.rate is not None:
            return rate_constrained_score(val["acc"], val["bpp"], self.rate.target_bpp)
        return -val["loss"]

    def postfix(self, m: dict[str, float]) -> dict[str, str]:
        keys = ("loss", "bpp", "psnr", "acc", "lambda_r")
        out = {k: f"{m[k]:.3f}" for k in keys if k in m}
        return out
