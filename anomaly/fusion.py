"""The default detector: the autoencoder and the motion model as two parts of one.

The autoencoder (`reconstruct`) scores what moves unlike anything in the
normal footage, fast above all (a panic, a runner, a sped-up crowd); the motion
model (`motion`) scores motion that is wrong for where people are (a wrong-way
walker, a crossing, a crowd that stops), which the autoencoder ranks backwards.
A user does not know in advance which kind will come, so the default detector
keeps both, each a complete detector folder of its own, and scores a frame by
the part that finds it more unusual, in units of that part's normal range:

    score(t) = max_k  s_k(t) / c_k,    c_k = the `scale_percentile` of part k's
                                        scores on held-out normal clips

The threshold is the `percentile` of these scores on the same held-out clips.
Both parts read the same features (one extractor per stream) and share the
frame reduction, border and smoothing, so a frame's score needs every part's:
the fused detector scores from the autoencoder's first full window on.

A folder holds FUSION (this module's `FusionConfig`) and one sub-folder per part
(`reconstruct/`, `motion/`), each loadable alone with its own threshold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from anomaly.cells import percentile_scale, percentile_threshold, scaled_max
from cli import InputError

PARTS = ("reconstruct", "motion")
SCALE_PERCENTILE = 99.0  # as the motion model's own parts (anomaly.motion)


@dataclass
class FusionConfig:
    """The fused detector's detector.json: its parts (sub-folder names), each
    part's scale, the threshold and the percentiles they were calibrated at, and
    the clips they were calibrated on (None when unknown)."""

    parts: list
    scales: dict
    threshold: float
    percentile: float = 95.0
    scale_percentile: float = SCALE_PERCENTILE
    calibrated_on: list | None = None

    def __post_init__(self):
        if not isinstance(self.parts, list) or not self.parts or any(p not in PARTS for p in self.parts) \
                or len(set(self.parts)) != len(self.parts):
            raise InputError(f"parts must be a list of distinct names of {PARTS}, got {self.parts!r}")
        if not isinstance(self.scales, dict) or sorted(self.scales) != sorted(self.parts) or any(
                not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in self.scales.values()):
            raise InputError(f"scales must give each part a positive number, got {self.scales!r}")
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise InputError(f"threshold must be a finite number, got {self.threshold!r}")

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def save(self, path: str) -> None:
        import runio

        runio.write_json(self.to_dict(), path)


def fuse(scores: dict, scales: dict) -> np.ndarray:
    """{part: (T,) scores} -> (T,) the largest score in units of its part's scale
    ({part: scale}; NaN wherever a part has no score yet). Scalars give a scalar."""
    return scaled_max(np.stack([np.asarray(scores[n], np.float64) for n in scales], -1), list(scales.values()))


def part_scales(per_clip: list, scale_percentile: float) -> dict:
    """{part: its scale}: the `scale_percentile` of the part's scored frames over
    normal clips, per clip {part: (T,) frame scores} (as `part_scores` gives them)."""
    if not 0 < scale_percentile <= 100:
        raise InputError(f"scale_percentile must be in (0, 100], got {scale_percentile}")
    return {n: percentile_scale(np.concatenate([c[n] for c in per_clip]), scale_percentile) for n in per_clip[0]}


def is_fused(meta: dict) -> bool:
    """Whether a detector.json's contents describe a fused detector."""
    return isinstance(meta, dict) and "parts" in meta


class FusedDetector:
    """Parts scored on shared features and fused by their scaled maximum.

    Args:
        parts: {name: `anomaly.detector.Detector`}, names of PARTS; they must
            share features, frame reduction, border and smoothing.
        config: the `FusionConfig` (scales and threshold).
    """

    objective = "fused"
    label = "AE + motion model"

    def __init__(self, parts: dict, config: FusionConfig):
        self.parts = dict(parts)
        self.config = config
        first = next(iter(self.parts.values()))
        for name, p in self.parts.items():
            for attr in ("feature_cfg", "score", "border", "smooth"):
                if getattr(p, attr) != getattr(first, attr):
                    raise InputError(f"fused parts must share their {attr}: {name} has {getattr(p, attr)!r}, "
                                     f"another {getattr(first, attr)!r}")
        self.feature_cfg = first.feature_cfg
        self.score, self.border, self.smooth = first.score, first.border, first.smooth
        self.threshold = float(config.threshold)
        self.reset()

    @property
    def configs(self) -> list:
        return [c for p in self.parts.values() for c in p.configs]

    @property
    def stride(self) -> int:
        return next(iter(self.parts.values())).stride

    @property
    def window(self) -> int:
        """Frames of the longest part's window: the fused score starts after it."""
        return max(p.window for p in self.parts.values())

    # ------------------------------------------------------------ persistence
    @classmethod
    def load(cls, folder: str, detector=None) -> "FusedDetector":
        from anomaly.detector import META, Detector

        path = os.path.join(folder, META)
        try:
            cfg = _from_dict(_read_meta(path))
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        parts = {name: Detector.load(os.path.join(folder, name), detector) for name in cfg.parts}
        return cls(parts, cfg)

    def save(self, folder: str) -> None:
        """Writes FUSION's detector.json into `folder` (the parts are saved by their trainer)."""
        from anomaly.detector import META

        self.config.save(os.path.join(folder, META))

    # --------------------------------------------------------------- scoring
    def features(self, frames) -> np.ndarray:
        """Raw features of a clip, shared by the parts: (T, S, S, C)."""
        return next(iter(self.parts.values())).features(frames)

    def part_scores(self, raw: np.ndarray) -> dict:
        """{part: (T,) its frame scores} of a clip's raw features (NaN before its first window)."""
        return {name: p.score_features(raw) for name, p in self.parts.items()}

    def fuse(self, scores: dict) -> np.ndarray:
        """{part: (T,) scores} -> (T,) the module's `fuse` at this detector's scales."""
        return fuse(scores, {n: self.config.scales[n] for n in self.parts})

    def score_features(self, raw: np.ndarray) -> np.ndarray:
        return self.fuse(self.part_scores(raw))

    def named_part_scores(self, raw: np.ndarray) -> dict:
        """{part: {name: (T,) scores}}: each part's own named parts ("reconstruct",
        "motion/surprise", ...) in the part's units, whose frame-by-frame maximum is
        the part's score."""
        return {name: {name if sub == p.objective else f"{name}/{sub}": v for sub, v in p.named_scores(raw).items()}
                for name, p in self.parts.items()}

    def named_scores(self, raw: np.ndarray) -> dict:
        """{name: (T,) scores} whose frame-by-frame maximum is the fused score:
        `named_part_scores` in units of each part's scale; NaN wherever a part
        has no score yet, as in `fuse`."""
        out = {k: v / self.config.scales[name] for name, subs in self.named_part_scores(raw).items()
               for k, v in subs.items()}
        first = np.isnan(np.stack(list(out.values()))).any(axis=0)  # before every part has a score
        return {k: np.where(first, np.nan, v) for k, v in out.items()}

    def score_frames(self, frames) -> np.ndarray:
        return self.score_features(self.features(frames))

    def calibrate(self, feats: list, percentile: float | None = None, scale_percentile: float | None = None,
                  videos: list | None = None) -> FusionConfig:
        """Sets each part's scale and the threshold from held-out normal clips'
        raw features (T, S, S, C) and returns the new config (`calibrate_scores`
        of the parts' scores)."""
        return self.calibrate_scores([self.part_scores(f) for f in feats], percentile, scale_percentile, videos)

    def calibrate_scores(self, per_clip: list, percentile: float | None = None,
                         scale_percentile: float | None = None, videos: list | None = None) -> FusionConfig:
        """As `calibrate`, from the parts' scores already computed: per clip
        {part: (T,) its frame scores} (as `part_scores` gives them)."""
        pct = self.config.percentile if percentile is None else percentile
        spct = self.config.scale_percentile if scale_percentile is None else scale_percentile
        scales = part_scales([{n: c[n] for n in self.parts} for c in per_clip], spct)
        self.config = dataclasses.replace(self.config, scales=scales, percentile=pct, scale_percentile=spct,
                                          threshold=0.0, calibrated_on=videos)
        fused = np.concatenate([self.fuse(s) for s in per_clip])
        self.config.threshold = self.threshold = percentile_threshold(fused, pct)
        return self.config

    # -------------------------------------------------------------- streaming
    def warm_up(self) -> None:
        """Each part's `Detector.warm_up`."""
        for p in self.parts.values():
            p.warm_up()

    def reset(self):
        """Starts a new stream."""
        self.raised_by = None
        for p in self.parts.values():
            p.reset()

    def add_features(self, flow: np.ndarray, heatmap: np.ndarray):
        """Precomputed features of the next frame (as `Detector.add_features`).
        Returns None until every part has a score, then (is_anomaly, score)."""
        return self.finish(self.score_pending(self.push(flow, heatmap)))

    def add_frame(self, frame: np.ndarray):
        """The next video frame (H, W, 3) uint8 RGB or (H, W) gray; see add_features."""
        return self.add_features(*self.frame_features(frame))

    # The three steps of a streamed frame, as `Detector`'s, for every part.
    def frame_features(self, frame: np.ndarray) -> tuple:
        """The next video frame -> (flow, heatmap), the features the parts share
        (they share their feature config: the first part's extractor serves all)."""
        return next(iter(self.parts.values())).frame_features(frame)

    def push(self, flow: np.ndarray, heatmap: np.ndarray) -> dict:
        return {name: p.push(flow, heatmap) for name, p in self.parts.items()}

    def score_pending(self, pending: dict) -> dict:
        return {name: self.parts[name].score_pending(x) for name, x in pending.items()}

    def finish(self, scored: dict):
        """As `Detector.finish`; also sets `raised_by`, the part whose scaled
        score is the fused score at this frame (None before every part has one)."""
        got = {name: self.parts[name].finish(x) for name, x in scored.items()}
        if any(r is None for r in got.values()):
            self.raised_by = None
            return None
        scaled = {n: r[1] / self.config.scales[n] for n, r in got.items()}
        self.raised_by = max(scaled, key=scaled.get)
        score = float(self.fuse({n: r[1] for n, r in got.items()}))
        return score > self.threshold, score


def load_detector(paths, detector=None):
    """A saved detector folder (fused or one part), or a list of one-part folders
    (an ensemble, `Detector.load`)."""
    from anomaly.detector import META, Detector

    paths = [paths] if isinstance(paths, str) else list(paths)
    fused = [p for p in paths if is_fused(_read_meta(os.path.join(p, META)))]
    if not fused:
        return Detector.load(paths, detector)
    if len(paths) > 1:
        raise InputError(f"{fused[0]} is a fused detector, which cannot be one member of an ensemble; "
                         f"give its parts' folders ({fused[0]}/reconstruct, {fused[0]}/motion) with other "
                         "detectors' of the same kind")
    return FusedDetector.load(paths[0], detector)


def apply_overrides(det, args, rescale: bool = False):
    """The command line's --threshold, --stride, --smooth, --score and --border
    (`anomaly.detector.apply_overrides`). A fused detector's part scales hold for
    the parts' saved settings, so it takes the last four only where the parts are
    rescaled next (`rescale`, anomaly.calibrate); returns `det`."""
    from anomaly.detector import apply_overrides as apply_one

    if not isinstance(det, FusedDetector):
        return apply_one(det, args)
    given = [f for f in ("stride", "smooth", "score", "border") if getattr(args, f, None) is not None]
    if given and not rescale:
        raise InputError(f"--{given[0]}: a fused detector's part scales hold for the settings it was calibrated "
                         f"with; change them with python -m anomaly.calibrate --{given[0]} ..., which rescales")
    for p in det.parts.values():
        apply_one(p, argparse.Namespace(**{f: getattr(args, f, None) for f in given}))
    first = next(iter(det.parts.values()))
    det.score, det.border, det.smooth = first.score, first.border, first.smooth
    if getattr(args, "threshold", None) is not None:
        det.threshold = args.threshold
    return det


def _read_meta(path: str):
    """detector.json's contents, or None where it is missing or unreadable (`Detector.load` then says so)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _from_dict(d) -> FusionConfig:
    from config import from_fields

    return from_fields(FusionConfig, d, "fusion")
