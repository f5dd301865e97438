"""Configuration: one dataclass tree, the named presets, JSON round trip.

The flow is: CLI flags -> preset -> `Config` -> data pipeline + model + loss. The
config is saved as `config.json` beside every trained model and is all that
`evaluate.py` needs to rebuild the data protocol and the network.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from cli import InputError


def from_fields(cls, d, what: str, tuples: tuple = ()):
    """`cls(**d)` for a dataclass read from a file: an InputError naming `what` for
    a value that is not an object, unknown keys or missing required ones, and
    fields in `tuples` that are not lists (they become tuples). What is left to
    go wrong is a value check of `cls` itself, or a bug."""
    if not isinstance(d, dict):
        raise InputError(f"{what}: expected an object, got {type(d).__name__} {d!r:.60}")
    fields = dataclasses.fields(cls)
    unknown = sorted(set(d) - {f.name for f in fields})
    if unknown:
        raise InputError(f"{what}: unknown keys {unknown}")
    missing = sorted(f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise InputError(f"{what}: missing keys {missing}")
    d = dict(d)
    for key in tuples:
        if key in d:
            if not isinstance(d[key], (list, tuple)):
                raise InputError(f"{what}: {key} must be a list, got {d[key]!r}")
            d[key] = tuple(d[key])
    return cls(**d)


@dataclass
class ModelConfig:
    """The predictor network (see `model.build_model`).

    Attributes:
        filters: filters of each ConvLSTM2D layer.
        kernel_sizes: square kernel size of each ConvLSTM2D layer.
        head_kernel: the Conv3D head's kernel, (time, height, width).
        causal: pad the head's time axis on the past side only. `False` gives the
            leaking `padding="same"` head, for reproducing published numbers only.
        patch_size: space-to-depth factor (1 = the reference model on full frames;
            4 = 64x64x1 frames processed as 16x16x16 patches).
        precision: "float32", "bfloat16" or "float16" (the last two are mixed
            precision: variables and the sigmoid output stay float32).
        frame_size: height and width of the frames.
        channels: channels of the frames.
        bn_momentum: BatchNorm's moving-average momentum (Keras's 0.99 in the
            reference model). Short CPU runs want 0.9: with 0.99 the inference-mode
            statistics trail the weights by a few hundred steps, and validation
            (hence checkpoint choice and the LR schedule) sees a worse model than
            training does.
        input_skip: the head also reads the input frames themselves (space-to-depth
            patches, concatenated to the last block's output), over the same causal
            window t-kernel_t+1..t. The stack then only has to model the motion; the
            digits' pixels reach the head directly. Causal like the rest: frame t+1
            is never an input of its own forecast. False is the reference model.
    """

    filters: tuple = (64, 64, 64)
    kernel_sizes: tuple = (5, 3, 1)
    head_kernel: tuple = (3, 3, 3)
    causal: bool = True
    patch_size: int = 1
    precision: str = "float32"
    frame_size: int = 64
    channels: int = 1
    bn_momentum: float = 0.99
    input_skip: bool = False


@dataclass
class TrainConfig:
    """Data protocol, loss and optimisation.

    Attributes:
        seq_len: frames per generated sequence (the model sees seq_len - 1).
        num_digits: digits per sequence.
        val_sequences: size of the fixed, seeded validation set.
        epochs, steps_per_epoch, batch_size, lr: the optimisation schedule;
            every step draws a fresh batch of generated training sequences.
        bce_weight, perceptual_weight, gdl_weight, mse_weight, l1_weight:
            composite-loss weights (`losses.CompositeLoss`).
        perceptual_weights: "imagenet", a path to a local VGG16 notop `.h5`, or
            None (random init; tests only).
        perceptual_layer: the VGG16 layer whose features are compared.
        feedback_passes: extra passes that feed the model its own forecasts
            after `context_frames` (0 = plain teacher forcing).
        feedback_ramp: scheduled sampling over the feedback passes: each fed
            frame is the model's forecast with a probability that rises linearly
            from 0 at the first step to 1 at `total_steps` (else the true frame);
            False feeds every forecast from the start.
        context_frames: true frames before self-fed frames (feedback training).
        subpixel_jitter: the width w of a random sub-pixel offset: training
            digits are placed at floor(position * 36 + u) with u uniform in
            [0, w) per digit and axis, instead of the reference generator's
            truncation (u = 0, w = 0): the model sees the same motion under
            several rasterisation conventions, so it cannot learn one. 1 covers
            every convention; 0.5 puts truncation (0) and rounding (0.5) at the
            range's two ends, equally far from its middle (a model does best
            near the middle of the range it was trained on; results/README.md).
            Validation stays on the reference's. A saved `true` reads as 1.
        lr_schedule: "plateau" (ReduceLROnPlateau + EarlyStopping on val_loss)
            or "cosine" (linear warm-up over `warmup_steps`, then cosine decay to
            1% of `lr` at `total_steps`; runs to the end, no early stopping).
        total_steps: optimizer steps the run is sized to (cosine schedule,
            feedback ramp); 0 = epochs * steps_per_epoch. With a nonzero value
            the run ends after ceil(total_steps / steps_per_epoch) epochs.
        warmup_steps: linear warm-up of the cosine schedule.
        val_rollout_sequences: validation sequences scored each epoch by the
            10->10 protocol (`val_rollout_mse_frame`, `val_rollout_ssim` and
            `val_next_ssim` in log.csv); 0 = off.
        patience: EarlyStopping patience in epochs (ReduceLROnPlateau uses half).
        jit_compile: XLA compilation of the train step ("auto", true or false).
        seed: one seed for the weights, the data stream and the validation set.
        init: the model.keras whose weights the run started from (a fine-tune), or None.
    """

    seq_len: int = 20
    num_digits: int = 2
    val_sequences: int = 256
    epochs: int = 50
    steps_per_epoch: int = 250
    batch_size: int = 8
    lr: float = 1e-3
    bce_weight: float = 1.0
    perceptual_weight: float = 0.1
    gdl_weight: float = 1.0
    mse_weight: float = 0.0
    l1_weight: float = 0.0
    perceptual_weights: str | None = "imagenet"
    perceptual_layer: str = "block3_conv3"
    feedback_passes: int = 0
    context_frames: int = 10
    feedback_ramp: bool = False
    subpixel_jitter: float = 0.0
    lr_schedule: str = "plateau"
    total_steps: int = 0
    warmup_steps: int = 0
    val_rollout_sequences: int = 0
    patience: int = 8
    jit_compile: str = "auto"
    seed: int = 0
    init: str | None = None

    def __post_init__(self):
        # configs saved when the jitter was on or off say true/false
        self.subpixel_jitter = float(self.subpixel_jitter)


@dataclass
class Config:
    """Everything a run is: its preset name, the model and the training recipe."""

    preset: str = "seed"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if not isinstance(d, dict):
            raise InputError(f"config: expected an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"preset", "model", "train"})
        if unknown:
            raise InputError(f"config: unknown keys {unknown}")
        return cls(
            preset=d.get("preset", "custom"),
            model=from_fields(ModelConfig, d.get("model", {}), "config model",
                              tuples=("filters", "kernel_sizes", "head_kernel")),
            train=from_fields(TrainConfig, d.get("train", {}), "config train"),
        )

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> "Config":
        """A saved config.json; an InputError naming the file if it is missing or malformed."""
        try:
            with open(path) as f:
                return cls.from_json(f.read())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not a readable config.json ({e})") from None
        except InputError as e:
            raise InputError(f"{path}: not a run's config.json ({e})") from None


# The named presets, in one place. Each is a set of overrides of the defaults.
PRESETS: dict[str, dict] = {
    # The reference model and recipe, unchanged: full 64x64 frames, fp32, the
    # composite loss with the ImageNet VGG16 perceptual term. Meant for a GPU.
    "seed": {},
    # What a user without a GPU should train: the same three ConvLSTM layers and
    # causal head on 4x4 space-to-depth patches (16x16x16), bf16 mixed
    # precision, no perceptual term (VGG16 on every frame would dominate the
    # cost on a CPU), BatchNorm momentum 0.9 (short runs: the moving statistics
    # must keep up; a config.json without the field reads as Keras's 0.99).
    "cpu": {
        "model": {"patch_size": 4, "precision": "bfloat16", "bn_momentum": 0.9},
        "train": {"perceptual_weight": 0.0, "batch_size": 16,
                  "steps_per_epoch": 100, "epochs": 200, "lr": 2e-3,
                  "patience": 12, "jit_compile": "false"},
    },
    # Seconds on a CPU: for tests and first contact. Not a useful model.
    "smoke": {
        "model": {"filters": (8, 8, 8), "patch_size": 4},
        "train": {"perceptual_weight": 0.0, "seq_len": 6, "batch_size": 2,
                  "steps_per_epoch": 2, "epochs": 1, "val_sequences": 4,
                  "patience": 1, "jit_compile": "false"},
    },
}


def preset_config(name: str) -> Config:
    """The `Config` of a named preset."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    over = PRESETS[name]
    cfg = Config(preset=name)
    cfg.model = dataclasses.replace(cfg.model, **over.get("model", {}))
    cfg.train = dataclasses.replace(cfg.train, **over.get("train", {}))
    return cfg
