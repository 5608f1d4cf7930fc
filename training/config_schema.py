"""Every training config key: its type, per-trainer default, allowed range and meaning.

One pydantic model per trainer. The four share ``TrainingConfig``; ``FinetuneTrainingConfig``
extends ``CodecTrainingConfig`` and ``JointTrainingConfig`` extends that, exactly as the stages
build on each other. A key is declared once, in the class of the first trainer that uses it;
a subclass that only changes the default redeclares it with the same ``Annotated`` alias
(type, range and description travel together), so field order, and with it the key order of
``config.json`` and of manifests, stays that of the base class.

Models are strict (no ``"3"`` -> 3, no ``true`` -> 1; an int is accepted for a float) and
forbid unknown keys: a typo must not silently train the wrong thing. Loading, error messages
and ``--set`` parsing live in ``training/config.py``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Keys whose default differs between trainers: the alias is the one definition of the key.
LearningRate = Annotated[float, Field(gt=0, description="peak learning rate (main optimizer)")]
WeightDecay = Annotated[float, Field(ge=0, description="weight decay of the main optimizer")]
Optimizer = Annotated[Literal["adam", "adamw", "sgd"], Field(description="main optimizer")]
WarmupEpochs = Annotated[float, Field(ge=0, description="linear learning-rate warm-up, epochs")]
Amp = Annotated[
    bool | Literal["auto"],
    Field(
        description='bf16 autocast of training forward passes, CPU or CUDA; "auto": only where '
        "the device has bf16 units (training/precision.py); entropy models, encode and decode "
        "always stay float32/64"
    ),
]
ChannelsLast = Annotated[
    bool, Field(description="channels_last memory format for training (CPU: faster with amp)")
]
AugShift = Annotated[float, Field(ge=0, le=0.5, description="max translation, fraction of side")]
AugRotate = Annotated[float, Field(ge=0, le=180, description="max rotation, degrees")]
AugZoom = Annotated[float, Field(ge=0, lt=1, description="zoom in [1 - aug_zoom, 1 + aug_zoom]")]
LabelSmoothing = Annotated[float, Field(ge=0, lt=1, description="label smoothing of the CE")]
ArtifactName = Annotated[str, Field(min_length=1, description="name of the exported artifact")]
ArtifactDir = Annotated[str, Field(description="an artifact folder (models/NAME/VERSION)")]
# Knowledge distillation, shared by the classifier (teacher on the clean face, student on the
# input_codec's decoded face) and the finetune/joint stages (student on the codec's x_hat).
KdTeacher = Annotated[
    str, Field(description="frozen teacher classifier artifact, reading the uncompressed face")
]
KdWeight = Annotated[
    float, Field(ge=0, description="weight of the KD term; 0 = no distillation (the paper's loss)")
]
KdTemperature = Annotated[float, Field(gt=0, description="softmax temperature T of the KD term")]


def _check_kd(weight: float, teacher: str) -> None:
    if weight > 0 and not teacher:
        raise ValueError('kd_weight > 0 needs kd_teacher = "CLASSIFIER_ARTIFACT"')


class TrainingConfig(BaseModel):
    """Keys every trainer has: data, optimisation schedule, run control, export."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_assignment=True)
    kind: ClassVar[str] = ""  # the trainer (fercomp train KIND)

    # data
    data: str = Field("../shared/data/fer2013.npz", description=".npz, Kaggle CSV or image tree")
    split: str = Field("Training", description="the split divided into train / validation")
    label_source: Literal["fer2013", "ferplus"] = Field(
        "fer2013", description="ferplus drops faces without a FER+ label"
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="held-out validation share")
    limit_train: int = Field(0, ge=0, description=">0: only the first K training faces")
    limit_val: int = Field(0, ge=0, description=">0: only the first K validation faces")
    loader: Literal["memory", "dataloader"] = Field(
        "memory", description="memory: whole set on the device; dataloader: torch DataLoader"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader workers (loader = dataloader)")
    augment: bool = Field(True, description="random flips, shifts, rotations, zoom")
    aug_shift: AugShift = 0.1
    aug_rotate: AugRotate = 10.0
    aug_zoom: AugZoom = 0.1
    aug_client: bool = Field(
        False,
        description="random sharpness, brightness, contrast and gamma per face, as the edge "
        "client's photos vary (training/client_variation.py)",
    )
    # optimisation
    seed: int = Field(0, description="seeds weights, split and augmentation")
    epochs: int = Field(10, ge=1, description="epochs (codecs: chunks of max_steps_per_epoch)")
    batch_size: int = Field(64, ge=1, description="global batch (split across DDP ranks)")
    eval_batch_size: int = Field(256, ge=1, description="validation batch")
    lr: LearningRate = 1e-3
    optimizer: Optimizer = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: WeightDecay = 0.0
    scheduler: Literal["cosine", "constant"] = Field(
        "cosine", description="after the optional linear warm-up"
    )
    warmup_epochs: WarmupEpochs = 0.0
    amp: Amp = False
    channels_last: ChannelsLast = False
    max_steps_per_epoch: int = Field(0, ge=0, description=">0: cap the steps of each epoch")
    time_budget_min: float = Field(
        0.0,
        ge=0,
        description=">0: stop after the epoch that would overrun this many minutes (a safety "
        "stop; the schedule is not shortened, so prefer right-sizing epochs)",
    )
    checkpoint_every: int = Field(0, ge=0, description=">0: also checkpoint every K steps")
    log_every: int = Field(20, ge=0, description="progress-bar refresh, in steps")
    select: Literal["best", "last"] = Field(
        "best", description="export the best validation epoch or the last"
    )
    # export
    export: bool = Field(True, description="export the selected epoch as an artifact")
    export_dir: str = Field("models", description="model repository to export into")
    name: ArtifactName = "model"
    version: str = Field("1", min_length=1, description="artifact version (a string)")


class ClassifierTrainingConfig(TrainingConfig):
    """``fercomp train classifier``: ResNet-18 topology on uncompressed faces."""

    kind: ClassVar[str] = "classifier"

    width: int = Field(32, ge=1, description="channels of the first stage")
    stem: Literal["small", "imagenet"] = Field("small", description="input stem (docs/MODELS.md)")
    optimizer: Optimizer = "sgd"
    lr: LearningRate = 0.05
    weight_decay: WeightDecay = 5e-4
    nesterov: bool = Field(True, description="Nesterov momentum (sgd)")
    label_smoothing: LabelSmoothing = 0.1
    ferplus_soft: float = Field(
        0.0,
        ge=0,
        le=1,
        description="a > 0: train on (1 - a) * one-hot(FER2013 label) + a * the face's FER+ vote "
        "distribution (needs the .npz archive; validation keeps the FER2013 labels)",
    )
    warmup_epochs: WarmupEpochs = 1.0
    amp: Amp = "auto"
    channels_last: ChannelsLast = True
    erase_prob: float = Field(0.0, ge=0, le=1, description="random erasing, per image")
    mix: Literal["none", "mixup", "cutmix"] = Field("none", description="batch mixing")
    mix_alpha: float = Field(0.2, ge=0, description="Beta(alpha, alpha) of the mixing weight")
    mix_prob: float = Field(0.5, ge=0, le=1, description="share of batches that are mixed")
    ema_decay: float = Field(0.0, ge=0, lt=1, description=">0: keep and export a weight EMA")
    tta_flip: bool = Field(
        False, description="select (and report) with the face+mirror average, as served"
    )
    init_classifier: ArtifactDir = Field("", description="warm start from a classifier artifact")
    widen_to: int = Field(
        0,
        ge=0,
        description=">0: widen init_classifier to this width first, computing the same logits "
        "(training/widen.py); the new channels are trained from their random init",
    )
    input_codec: Literal["none", "webp", "learned"] = Field(
        "none",
        description="webp: train and validate on faces WebP-encoded and decoded at a quality "
        "drawn per face (the WebP-adapted classifier); learned: on faces sent through "
        "input_codec_model's bitstream and decoded (training/input_codec.py)",
    )
    input_codec_model: ArtifactDir = Field(
        "", description="the codec artifact held fixed (input_codec = learned)"
    )
    webp_quality_range: list[int] = Field(
        [5, 60], description="[lo, hi] WebP qualities drawn from (input_codec = webp)"
    )
    # + kd_weight * T^2 * KL(teacher(clean face) || classifier(input_codec's decoded face))
    kd_teacher: KdTeacher = ""
    kd_weight: KdWeight = 0.0
    kd_temperature: KdTemperature = 4.0
    name: ArtifactName = "fer-resnet18"

    @model_validator(mode="after")
    def _soft_targets_need_fer2013_labels(self) -> ClassifierTrainingConfig:
        if self.ferplus_soft > 0 and self.label_source != "fer2013":
            raise ValueError(
                "ferplus_soft mixes FER+ votes into FER2013 labels: label_source must be fer2013"
            )
        return self

    @model_validator(mode="after")
    def _quality_range(self) -> ClassifierTrainingConfig:
        q = self.webp_quality_range
        if not (len(q) == 2 and 1 <= q[0] <= q[1] <= 100):
            raise ValueError(
                f"webp_quality_range must be [lo, hi] with 1 <= lo <= hi <= 100, got {q}"
            )
        return self

    @model_validator(mode="after")
    def _learned_needs_a_codec(self) -> ClassifierTrainingConfig:
        if (self.input_codec == "learned") != bool(self.input_codec_model):
            raise ValueError(
                'input_codec = "learned" and input_codec_model = "CODEC_ARTIFACT" go together'
            )
        return self

    @model_validator(mode="after")
    def _kd_needs_a_teacher(self) -> ClassifierTrainingConfig:
        _check_kd(self.kd_weight, self.kd_teacher)
        if self.kd_weight > 0 and self.mix != "none":
            raise ValueError('kd_weight > 0 reads the teacher on unmixed faces: set mix = "none"')
        return self

    @model_validator(mode="after")
    def _widen_needs_init(self) -> ClassifierTrainingConfig:
        if self.widen_to and not self.init_classifier:
            raise ValueError('widen_to needs init_classifier = "CLASSIFIER_ARTIFACT" to widen')
        return self


class CodecTrainingConfig(TrainingConfig):
    """``fercomp train codec``: the RD loss ``bpp + lmbda * 255^2 * MSE`` (CompressAI)."""

    kind: ClassVar[str] = "codec"

    N: int = Field(64, ge=1, description="channels of the transforms")
    M: int = Field(96, ge=1, description="channels of the latent")
    lmbda: float = Field(0.0067, gt=0, description="rate-distortion trade-off (--lambdas sweeps)")
    lr: LearningRate = 1e-4
    aux_lr: float = Field(1e-3, gt=0, description="learning rate of the quantile (aux) optimizer")
    clip_grad: float = Field(1.0, ge=0, description=">0: clip the main gradients' norm")
    aug_rotate: AugRotate = 0.0  # codecs: flips and small shifts only, no resampling blur
    aug_zoom: AugZoom = 0.0
    aug_shift: AugShift = 0.05
    classifier: ArtifactDir = Field(
        "", description="classifier artifact: accuracy on decoded faces (frozen in finetune, "
        "trained on in joint)"
    )  # fmt: skip
    init_codec: ArtifactDir = Field(
        "", description='warm start from a codec artifact ("{lmbda}" is replaced in sweeps)'
    )
    widen_M: int = Field(
        0,
        ge=0,
        description=">0: widen init_codec's latent to M channels first, same reconstructions "
        "(training/widen.py); the new channels start small and nearly free, then train",
    )
    align_log2: int = Field(
        6,
        ge=4,
        le=8,
        description="pixel alignment (docs/CODEC.md): 6 pads a 48x48 face to 64x64 as every "
        "codec before issue 11; 4 pads to 16 only (y 3x3). Also applied to init_codec",
    )
    export_eval_limit: int = Field(
        0, ge=0, description=">0: measure real bitstreams on the first K validation faces"
    )
    name: ArtifactName = "face-hyperprior"

    @model_validator(mode="after")
    def _widen_needs_codec(self) -> CodecTrainingConfig:
        if self.widen_M and not self.init_codec:
            raise ValueError('widen_M needs init_codec = "CODEC_ARTIFACT" to widen')
        return self


class FinetuneTrainingConfig(CodecTrainingConfig):
    """``fercomp train finetune``: ``lambda_r*bpp + lambda_d*MSE + lambda_c*CE(clf(x_hat), y)``
    with the classifier frozen (the paper's first stage)."""

    kind: ClassVar[str] = "finetune"

    lambda_r: float = Field(1.0, ge=0, description="weight of the rate (bpp)")
    lambda_d: float = Field(
        -1.0, description="weight of the MSE; <0: relative, |lambda_d| * lmbda * 255^2"
    )
    lambda_c: float = Field(1.0, ge=0, description="weight of the CE on decoded faces")
    target_bpp: float = Field(
        0.0,
        ge=0,
        description=">0: adapt lambda_r each step to hold the rate estimate at this many bits "
        "per pixel and select the most accurate epoch at or under it (training/rate_control.py)",
    )
    rate_gain: float = Field(
        0.01, gt=0, description="step of log(lambda_r) per relative rate error"
    )
    label_smoothing: LabelSmoothing = 0.0
    # Knowledge distillation (training/losses.py): + kd_weight * T^2 * KL(teacher(x) || clf(x_hat))
    kd_teacher: KdTeacher = ""
    kd_weight: KdWeight = 0.0
    kd_temperature: KdTemperature = 4.0
    lr: LearningRate = 5e-5
    name: ArtifactName = "face-hyperprior-fer"

    @model_validator(mode="after")
    def _needs_artifacts(self) -> FinetuneTrainingConfig:
        for key in ("init_codec", "classifier"):
            if not getattr(self, key):
                raise ValueError(f'the {self.kind} trainer needs {key} = "ARTIFACT_DIR"')
        _check_kd(self.kd_weight, self.kd_teacher)
        if self.target_bpp > 0 and self.lambda_r <= 0:
            raise ValueError("target_bpp adapts lambda_r multiplicatively: start it above 0")
        return self


class JointTrainingConfig(FinetuneTrainingConfig):
    """``fercomp train joint``: codec and classifier trained together; ``lambda_clean`` adds
    the CE on *uncompressed* faces so the classifier stays accurate on raw faces instead of
    specialising to decoded ones."""

    kind: ClassVar[str] = "joint"

    classifier_lr: float = Field(1e-4, gt=0, description="learning rate of the classifier")
    classifier_weight_decay: float = Field(1e-4, ge=0, description="its weight decay")
    lambda_clean: float = Field(0.5, ge=0, description="weight of the CE on uncompressed faces")
    classifier_name: ArtifactName = "fer-resnet18-joint"
    name: ArtifactName = "face-hyperprior-joint"


CONFIG_MODELS: dict[str, type[TrainingConfig]] = {
    m.kind: m
    for m in (
        ClassifierTrainingConfig,
        CodecTrainingConfig,
        FinetuneTrainingConfig,
        JointTrainingConfig,
    )
}
