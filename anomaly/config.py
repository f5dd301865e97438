"""The detector's configs: `AEConfig` and `MotionConfig` (its two networks, built
by `anomaly.model`; no Keras here, so flags and folders are checked in a blink)
and `DetectorConfig`, the schema of a detector folder's detector.json.

Everything that scoring needs (features, normaliser, window, threshold, the
frame score's reduction) and a record of how the detector was trained. Loading
rejects unknown keys and malformed values with one `InputError` naming the file;
folders written before a field existed load with its default, and the field
names of older folders (`image_size`, `patch`) are read as today's
(`frame_size`, `patch_size`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import asdict, dataclass, field

from anomaly.features import FeatureConfig
from cli import InputError
from config import from_fields

OBJECTIVES = ("reconstruct", "motion")
SCORES = ("mean", "local")
RENAMED = {"image_size": "frame_size", "patch": "patch_size"}  # older detector.json -> today
# Fields of older detector.json that were measured on the fused default and removed (anomaly/README.md,
# "Options"): each read at its off value and dropped; a folder that used one is refused.
REMOVED = {"coords": (False, "coordinate channels in the autoencoder")}


def check_border(border: int, size: int, name: str = "border") -> None:
    """InputError unless `border` is an integer in [0, size / 2) (some of a size x size frame is left)."""
    if not isinstance(border, numbers.Integral) or isinstance(border, bool) or not 0 <= 2 * border < size:
        raise InputError(f"{name} must be in [0, {size // 2}), got {border!r}")


@dataclass
class AEConfig:
    """encoder / decoder: ConvLSTM filters per layer (the output layer maps the
    last decoder layer back to the 3 feature channels); kernel: ConvLSTM kernel;
    patch_size: space-to-depth factor; window: frames per window; frame_size: S."""

    encoder: tuple = (32, 64, 32)
    decoder: tuple = (64, 32)
    kernel: int = 3
    patch_size: int = 2
    window: int = 16
    frame_size: int = 64
    channels: int = 3
    precision: str = "float32"
    bn_momentum: float = 0.9  # a few hundred steps of training: moving stats must keep up

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d, what: str = "autoencoder"):
        return from_fields(cls, d, what, tuples=("encoder", "decoder"))


@dataclass
class MotionConfig:
    """The motion model of `anomaly.motion`.

    widths: Conv2D filters (kernel x kernel, ReLU) at pixel resolution;
    cell_widths: 3x3 Conv2D filters after averaging each cell (the model sees
    its neighbourhood); frame_size S and border b: the cells are the detector's
    grid (`cells.cell_grid`: S // 8 pixels, inside the border); directions,
    speed_edges, occupied: the motion bins (`anomaly.location.LocationModel`;
    `anomaly.motion.fit` keeps the first edge, the still speed, and fits the
    others on the training clips); speed_scale: the speed head predicts the
    cell's mean flow speed divided by this (the training clips' mean, so its
    targets are near 1); min_speed: the
    floor of both speeds in the pace score (px/frame: a near-empty, still frame
    is not a surprise)."""

    widths: tuple = (16, 32)
    cell_widths: tuple = (64,)
    kernel: int = 3
    frame_size: int = 64
    border: int = 4
    directions: int = 8
    speed_edges: tuple = (0.1, 0.4, 1.0)
    occupied: float = 0.05
    speed_scale: float = 1.0
    min_speed: float = 0.02

    @property
    def cell(self) -> int:
        return max(1, self.frame_size // 8)

    @property
    def grid(self) -> int:
        """Cells per side."""
        return (self.frame_size - 2 * self.border) // self.cell

    @property
    def bins(self) -> int:
        return 2 + self.directions * len(self.speed_edges)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d, what: str = "motion"):
        return from_fields(cls, d, what, tuples=("widths", "cell_widths", "speed_edges"))


AE_PRESETS = {
    # the default widths: encoder 3->32->64->32, decoder 32->64->32->3
    "strong": AEConfig(),
    # real time on a CPU: narrower layers on 4x4 patches
    "light": AEConfig(encoder=(16, 32, 16), decoder=(32, 16), patch_size=4),
}


@dataclass
class DetectorConfig:
    """objective: "reconstruct" (the ConvLSTM autoencoder) or "motion"
    (`anomaly.motion`); features, normalizer ({"mean", "std"} per channel);
    window: frames per scored window; stride: a window scored every N frames;
    threshold: frame scores above it are anomalous, calibrated as the
    `percentile` of held-out normal scores; score, smooth, border: the frame
    reduction ("mean" or "local"), causal max over N frames, pixels left out at
    each edge; autoencoder / motion (+ scales, calibrated at scale_percentile,
    None in detectors that predate it: 95): the network's config;
    location_counts: a motion detector's per-location counts of the motion bins
    on its training frames, (n, n, bins) nested lists, the third part of its
    score (`anomaly.motion`; absent in detectors trained before it existed,
    which score with two parts). The other fields record the training (None
    when unknown)."""

    features: FeatureConfig
    normalizer: dict
    window: int
    threshold: float
    objective: str = "reconstruct"
    stride: int = 1
    percentile: float = 95.0
    score: str = "mean"
    smooth: int = 1
    border: int = 0
    autoencoder: AEConfig | None = None
    motion: MotionConfig | None = None
    scales: dict | None = None
    scale_percentile: float | None = None
    location_counts: list | None = None
    preset: str | None = None
    train_stride: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    epoch: int | None = None
    epochs_run: int | None = None
    train_clips: int | None = None
    val_clips: int | None = None
    videos: list | None = None
    feature_seconds: float | None = None
    fit_seconds: float | None = None
    seed: int | None = None
    replicas: int | None = None
    global_batch: int | None = None
    calibrated_on: list | None = field(default=None)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.score not in SCORES:
            raise InputError(f"score must be one of {SCORES}, got {self.score!r}")
        for name in ("window", "stride", "smooth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        check_border(self.border, self.features.frame_size)
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise InputError(f"threshold must be a finite number, got {self.threshold!r}")
        n = self.features.channels
        if not isinstance(self.normalizer, dict) or sorted(self.normalizer) != ["mean", "std"] or any(
                not isinstance(self.normalizer[k], (list, tuple)) or len(self.normalizer[k]) != n for k in ("mean", "std")):
            raise InputError(f"normalizer needs a mean and a std of {n} channels, got {self.normalizer!r}")
        if self.objective == "motion":
            self._check_motion()

    def _check_motion(self) -> None:
        if self.motion is None or self.scales is None:
            raise InputError("a motion detector needs its motion config and scales")
        parts = 2
        if self.location_counts is not None:
            import numpy as np

            c = np.asarray(self.location_counts)
            m = self.motion
            if c.shape != (m.grid, m.grid, m.bins) or c.dtype.kind not in "iu" or (c < 0).any():
                raise InputError(f"location_counts must be ({m.grid}, {m.grid}, {m.bins}) counts >= 0, "
                                 f"got shape {c.shape} of {c.dtype}")
            parts = 3
        if not isinstance(self.scales, dict) or sorted(self.scales) != sorted(SCORES) or any(
                not isinstance(v, list) or len(v) != parts or not all(
                    isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in v)
                for v in self.scales.values()):
            raise InputError(f"scales must map {list(SCORES)} to {parts} positive numbers, got {self.scales!r}")
        if self.scale_percentile is not None and not (
                isinstance(self.scale_percentile, (int, float)) and 0 < self.scale_percentile <= 100):
            raise InputError(f"scale_percentile must be in (0, 100], got {self.scale_percentile!r}")

    def to_dict(self) -> dict:
        """Plain JSON types, fields that are None left out."""
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                d[f.name] = v.to_dict() if hasattr(v, "to_dict") else v
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "detector.json") -> "DetectorConfig":
        if not isinstance(d, dict):
            raise InputError(f"{source}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        try:
            d["features"] = from_fields(FeatureConfig, _renamed(d.get("features")), "features")
            if d.get("autoencoder") is not None:
                d["autoencoder"] = AEConfig.from_dict(_renamed(d["autoencoder"]))
            if d.get("motion") is not None:
                d["motion"] = MotionConfig.from_dict(_renamed(d["motion"]))
            return from_fields(cls, d, source)
        except InputError as e:
            msg = str(e)
            raise InputError(msg if msg.startswith(source) else f"{source}: {msg}") from None

    def save(self, path: str) -> None:
        import runio

        runio.write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str) -> "DetectorConfig":
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not a readable detector.json ({e})") from None
        return cls.from_dict(d, path)


def _renamed(d):
    """An older folder's field names read as today's and its removed fields dropped (anything but an
    object is left for the check); a folder that used a removed field is refused with one line."""
    if not isinstance(d, dict):
        return d
    for k, (off, what) in REMOVED.items():
        if k in d and d[k] != off:
            raise InputError(f"this detector uses {what} ({k} = {d[k]!r}), which was removed (it did not "
                             "improve the fused default); retrain it with python -m anomaly.train")
    return {RENAMED.get(k, k): v for k, v in d.items() if k not in REMOVED}
