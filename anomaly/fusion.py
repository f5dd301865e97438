"""The default detector: the autoencoder and the motion model as two parts of one.

The autoencoder (`reconstruct`) scores what moves unlike anything in the
normal footage, fast above all (a panic, a runner, a sped-up crowd); the motion
model (`motion`) scores motion that is wrong for where people are (a wrong-way
walker, a crossing, a crowd that stops), which the autoencoder ranks backwards.
A user does not know in advance which kind will come, so the default detector
keeps both, each a complete detector folder of its own, and scores a frame by
the named part (`reconstruct`, `motion/surprise`, `motion/pace`,
`motion/counts`) that finds it most unusual, in units of that part's own
normal frames (`RankMax`):

    score(t) = max_n  F_n(s_n(t)),    F_n = the empirical distribution function of
                                        named part n's scores on held-out normal clips

so that on normal footage every named part is spread alike over [0, 1] and no
part's ordinary level hides another's evidence; above its largest normal score
F_n goes on rising, 1 + (s - max) / max. Folders calibrated before this rule
fuse the two parts by their scaled maximum (`ScaledMax`: s_k / c_k, c_k the
`scale_percentile` of part k's normal scores) and keep it when recalibrated.
The threshold is the `percentile` of the fused scores on the same held-out
clips. Both parts read the same features (one extractor per stream) and share
the frame reduction, border and smoothing, so a frame's score needs every
part's: the fused detector scores from the autoencoder's first full window on.

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

from anomaly.cells import named_max, percentile_scale, percentile_threshold, scaled_max
from cli import InputError

PARTS = ("reconstruct", "motion")
SCALE_PERCENTILE = 99.0  # as the motion model's own parts (anomaly.motion)
RANK_POINTS = 1001  # quantiles kept of each named part's normal scores: one every 0.1%


@dataclass
class FusionConfig:
    """The fused detector's detector.json: its parts (sub-folder names), how they
    are fused, either `ranks` ({named part: RANK_POINTS quantiles of its normal
    scores}, `RankMax`) or `scales` ({part: scale}, `ScaledMax`, folders
    calibrated before ranks), the threshold and the percentiles they were
    calibrated at, and the clips they were calibrated on (None when unknown)."""

    parts: list
    scales: dict | None
    threshold: float
    percentile: float = 95.0
    scale_percentile: float | None = SCALE_PERCENTILE
    calibrated_on: list | None = None
    ranks: dict | None = None

    def __post_init__(self):
        if not isinstance(self.parts, list) or not self.parts or any(p not in PARTS for p in self.parts) \
                or len(set(self.parts)) != len(self.parts):
            raise InputError(f"parts must be a list of distinct names of {PARTS}, got {self.parts!r}")
        if (self.scales is None) == (self.ranks is None):
            raise InputError("a fused detector fuses its parts by ranks or by scales: give exactly one, got "
                             f"scales {self.scales!r} and ranks {'None' if self.ranks is None else 'given'}")
        if self.scales is not None and (not isinstance(self.scales, dict) or sorted(self.scales) != sorted(self.parts)
                                        or any(not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                                               for v in self.scales.values())):
            raise InputError(f"scales must give each part a positive number, got {self.scales!r}")
        if self.ranks is not None and (
                not isinstance(self.ranks, dict) or not self.ranks
                or any(part_of(n) not in self.parts for n in self.ranks)
                or any(not _quantiles_ok(q) for q in self.ranks.values())):
            raise InputError("ranks must give named parts of the detector's parts each a list of at least 2 "
                             "finite non-decreasing quantiles, got "
                             + (repr(self.ranks) if not isinstance(self.ranks, dict) else repr(sorted(self.ranks))))
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise InputError(f"threshold must be a finite number, got {self.threshold!r}")

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def save(self, path: str) -> None:
        import runio

        runio.write_json(self.to_dict(), path)


def _quantiles_ok(q) -> bool:
    if not isinstance(q, list) or len(q) < 2 or not all(isinstance(v, (int, float)) for v in q):
        return False
    a = np.asarray(q, np.float64)
    return bool(np.isfinite(a).all() and (np.diff(a) >= 0).all())


def part_of(named: str) -> str:
    """The part a named part belongs to: "motion/pace" -> "motion", "reconstruct" -> itself."""
    return named.split("/")[0]


def qualified(part: str, objective: str, sub: str) -> str:
    """A part's named part as the fused detector names it: the part's own name
    where the part is one score ("reconstruct"), else "part/sub" ("motion/pace")."""
    return part if sub == objective else f"{part}/{sub}"


def rank(scores, quantiles: np.ndarray):
    """Scores -> their place among a named part's normal scores, given by its
    quantiles at evenly spaced probabilities from 0 to 1: linear between the
    quantiles, 1 + (s - max) / max above the largest (so a frame beyond every
    normal one still outranks a lesser one); NaN stays NaN. Scalars give a scalar."""
    q = np.asarray(quantiles, np.float64)
    s = np.asarray(scores, np.float64)
    top = max(q[-1], 1e-6)
    inside = np.interp(s, q, np.linspace(0.0, 1.0, len(q)))
    out = np.where(s > q[-1], 1.0 + (s - q[-1]) / top, inside)
    return float(out) if out.ndim == 0 else out


class RankMax:
    """The fusion of new detectors: each named part's score in units of the
    part's own normal frames (`rank`), the largest of them.

    Args:
        ranks: {named part: quantiles of its scores on normal frames}.
    """

    def __init__(self, ranks: dict):
        self.ranks = {n: np.asarray(q, np.float64) for n, q in ranks.items()}

    @classmethod
    def fit(cls, per_clip: list) -> "RankMax":
        """From normal clips' named scores, per clip {named part: (T,) scores}, on
        the frames every named part scores (those with a fused score)."""
        names = list(per_clip[0])
        stacked = [np.stack([np.asarray(c[n], np.float64) for n in names]) for c in per_clip]
        v = np.concatenate([x[:, np.isfinite(x).all(axis=0)] for x in stacked], axis=1)
        if v.shape[1] == 0:
            raise InputError("no scored frames to rank the parts on (clips shorter than a window?)")
        q = np.percentile(v, np.linspace(0.0, 100.0, RANK_POINTS), axis=1)  # (RANK_POINTS, parts)
        return cls({n: q[:, k] for k, n in enumerate(names)})

    def refit(self, per_clip: list, scale_percentile: float | None = None) -> "RankMax":
        """This kind of fusion fitted on other normal clips (RankMax has no scales)."""
        return RankMax.fit(per_clip)

    def config(self) -> dict:
        """The FusionConfig fields of this fusion."""
        return {"ranks": {n: [float(f"{v:.7g}") for v in q] for n, q in self.ranks.items()}, "scales": None,
                "scale_percentile": None}

    def transform(self, named: dict) -> dict:
        """{named part: scores} -> {named part: their `rank`}."""
        return {n: rank(v, self.ranks[n]) for n, v in named.items()}


class ScaledMax:
    """The fusion of folders calibrated before `RankMax`: each named part over
    the scale of its part (the `scale_percentile` of the part's normal scores),
    the largest of them.

    Args:
        scales: {part: scale}.
        scale_percentile: the percentile the scales were taken at.
    """

    def __init__(self, scales: dict, scale_percentile: float = SCALE_PERCENTILE):
        self.scales = dict(scales)
        self.scale_percentile = scale_percentile

    @classmethod
    def fit(cls, per_clip: list, scale_percentile: float) -> "ScaledMax":
        """From normal clips' named scores, per clip {named part: (T,) scores}; a
        part's score is the largest of its named parts."""
        parts = {part_of(n) for n in per_clip[0]}
        by_part = [{p: named_max({n: v for n, v in c.items() if part_of(n) == p}) for p in parts} for c in per_clip]
        return cls(part_scales(by_part, scale_percentile), scale_percentile)

    def refit(self, per_clip: list, scale_percentile: float | None = None) -> "ScaledMax":
        """This kind of fusion fitted on other normal clips, its scales at
        `scale_percentile` (default: this one's)."""
        return ScaledMax.fit(per_clip, self.scale_percentile if scale_percentile is None else scale_percentile)

    def config(self) -> dict:
        return {"scales": self.scales, "ranks": None, "scale_percentile": self.scale_percentile}

    def transform(self, named: dict) -> dict:
        return {n: np.asarray(v, np.float64) / self.scales[part_of(n)] for n, v in named.items()}


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
    """Parts scored on shared features and fused by the largest of their named
    parts, each in units of its normal scores (`RankMax`, or `ScaledMax` for
    older folders).

    Args:
        parts: {name: `anomaly.detector.Detector`}, names of PARTS; they must
            share features, frame reduction, border and smoothing.
        config: the `FusionConfig` (ranks or scales, and the threshold).
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
        self.fusion = fusion_of(config)
        self.reset()

    @classmethod
    def fitted(cls, parts: dict, per_clip: list, percentile: float, videos: list | None = None) -> "FusedDetector":
        """A new fused detector of `parts`, its ranks and threshold calibrated on
        held-out normal clips' named scores (per clip {named part: (T,) scores},
        `flat` of `named_part_scores`)."""
        fusion = RankMax.fit(per_clip)
        det = cls(parts, FusionConfig(list(parts), threshold=0.0, percentile=percentile, **fusion.config()))
        det.calibrate_scores(per_clip, percentile, videos=videos)
        return det

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

    def fuse(self, named: dict) -> np.ndarray:
        """{named part: (T,) scores, in its part's units} -> (T,) the fused score:
        the largest named part after this detector's fusion (NaN wherever a part
        has no score yet)."""
        return named_max(self.fusion.transform(named))

    def score_features(self, raw: np.ndarray) -> np.ndarray:
        return self.fuse(flat(self.named_part_scores(raw)))

    def named_part_scores(self, raw: np.ndarray) -> dict:
        """{part: {named part: (T,) scores}}: each part's own named parts
        ("reconstruct", "motion/surprise", ...) in the part's units, whose
        frame-by-frame maximum is the part's score."""
        return {name: {qualified(name, p.objective, sub): v for sub, v in p.named_scores(raw).items()}
                for name, p in self.parts.items()}

    def named_scores(self, raw: np.ndarray) -> dict:
        """{name: (T,) scores} whose frame-by-frame maximum is the fused score:
        `named_part_scores` after this detector's fusion; NaN wherever a part
        has no score yet, as in `fuse`."""
        out = self.fusion.transform(flat(self.named_part_scores(raw)))
        first = np.isnan(np.stack(list(out.values()))).any(axis=0)  # before every part has a score
        return {k: np.where(first, np.nan, v) for k, v in out.items()}

    def score_frames(self, frames) -> np.ndarray:
        return self.score_features(self.features(frames))

    def calibrate(self, feats: list, percentile: float | None = None, scale_percentile: float | None = None,
                  videos: list | None = None) -> FusionConfig:
        """Refits the fusion (of the kind this detector has) and the threshold on
        held-out normal clips' raw features (T, S, S, C) and returns the new
        config (`calibrate_scores` of the named parts' scores)."""
        return self.calibrate_scores([flat(self.named_part_scores(f)) for f in feats], percentile, scale_percentile,
                                     videos)

    def calibrate_scores(self, per_clip: list, percentile: float | None = None,
                         scale_percentile: float | None = None, videos: list | None = None) -> FusionConfig:
        """As `calibrate`, from the named parts' scores already computed: per clip
        {named part: (T,) scores} (`flat` of `named_part_scores`). A
        `scale_percentile` refits a ScaledMax's scales at it; RankMax has none."""
        pct = self.config.percentile if percentile is None else percentile
        self.fusion = self.fusion.refit(per_clip, scale_percentile)
        self.config = dataclasses.replace(self.config, percentile=pct, threshold=0.0, calibrated_on=videos,
                                          **self.fusion.config())
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
        """As `Detector.finish`; also sets `raised_by`, the part whose named part
        is the fused score at this frame (None before every part has one)."""
        got = {name: self.parts[name].finish(x) for name, x in scored.items()}
        if any(r is None for r in got.values()):
            self.raised_by = None
            return None
        named = {qualified(name, p.objective, sub): v for name, p in self.parts.items()
                 for sub, v in zip(p.part_names, p.held_parts)}
        fused = {n: float(v) for n, v in self.fusion.transform(named).items()}
        top = max(fused, key=fused.get)
        self.raised_by = part_of(top)
        return fused[top] > self.threshold, fused[top]


def flat(by_part: dict) -> dict:
    """{part: {named part: scores}} -> {named part: scores}."""
    return {n: v for named in by_part.values() for n, v in named.items()}


def fusion_of(config: FusionConfig):
    """The fusion a config describes: RankMax where it has ranks, else ScaledMax."""
    if config.ranks is not None:
        return RankMax(config.ranks)
    return ScaledMax(config.scales, config.scale_percentile)


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

    if isinstance(d, dict) and "ranks" in d:  # saved without the fields only ScaledMax has
        d = {"scales": None, "scale_percentile": None, **d}
    return from_fields(FusionConfig, d, "fusion")
