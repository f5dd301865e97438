"""Frame cells and score reductions shared by every part of the anomaly detector:
the scored windows of a clip, the cell grid of a frame and its reductions
("mean", "local"), the border crop, the causal smoothing of frame scores, the
percentile threshold, and the scaled maximum that combines a score's parts (the
motion model's own parts, and the fused detector's). The lowest floor of `anomaly`'s scoring: the per-location
baseline (`anomaly.location`), the motion model (`anomaly.motion`) and the
streaming `anomaly.detector` build on it.
"""

from __future__ import annotations

import numpy as np

from anomaly.config import SCORES, check_border
from cli import InputError


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    return list(range(0, n_frames - window + 1, stride))


def windows(feats: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(T, S, S, C) -> (K, window, S, S, C) windows starting every `stride` frames."""
    starts = window_starts(len(feats), window, stride)
    if not starts:
        return np.zeros((0, window, *feats.shape[1:]), feats.dtype)
    return np.stack([feats[s:s + window] for s in starts])


def reduce_error_map(err: np.ndarray, how: str, border: int = 0) -> np.ndarray:
    """(..., S, S) squared-error maps -> (...,) frame scores.

    Args:
        err: per-pixel errors, the last two axes the frame.
        how: "mean" (over the frame) or "local" (the largest mean over cells of
            S // 8 pixels, the grid starting at the border).
        border: pixels left out at each edge.
    """
    if how == "mean":
        return inside(err, border).mean(axis=(-2, -1))
    return reduce_cells(cell_grid(err, border), how)


def reduce_cells(cells: np.ndarray, how: str) -> np.ndarray:
    """(..., n, n) per-cell values -> (...,): the largest ("local") or the mean
    ("mean"); the frame reduction of the model, the per-location baseline and
    the motion model alike."""
    if how == "local":
        return cells.max(axis=(-2, -1))
    if how == "mean":
        return cells.mean(axis=(-2, -1))
    raise InputError(f"score must be one of {SCORES}, got {how!r}")


def inside(err: np.ndarray, border: int) -> np.ndarray:
    """(..., S, S) maps without `border` pixels at each edge."""
    check_border(border, min(err.shape[-2:]))
    return err[..., border:err.shape[-2] - border, border:err.shape[-1] - border] if border else err


def cell_grid(err: np.ndarray, border: int = 0) -> np.ndarray:
    """(..., S, S) maps -> (..., n, n) means over cells of S // 8 pixels, the grid
    starting at `border` (pixels left out at each edge): the cells of the "local"
    score, and of the per-location baseline (`anomaly.location`)."""
    c = max(1, err.shape[-1] // 8)
    err = inside(err, border)
    n = err.shape[-1] // c
    g = err[..., : n * c, : n * c]
    return g.reshape(*g.shape[:-2], n, c, n, c).mean(axis=(-3, -1))


def causal_max(scores: np.ndarray, n: int) -> np.ndarray:
    """Maximum of each frame's score and the n-1 before it, NaNs ignored (NaN where
    all n are NaN); what streaming gives frame by frame."""
    s = np.asarray(scores, np.float64)
    if n <= 1:
        return s.copy()
    out = np.full_like(s, np.nan)
    for t in range(len(s)):
        seg = s[max(0, t - n + 1):t + 1]
        if np.isfinite(seg).any():
            out[t] = np.nanmax(seg)
    return out


def percentile_threshold(errors, percentile: float) -> float:
    """The `percentile` of held-out normal frame errors (NaNs ignored)."""
    e = np.asarray(errors, np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        raise InputError("no scored frames to calibrate the threshold on (clips shorter than a window?)")
    if not 0 < percentile < 100:
        raise InputError(f"percentile must be in (0, 100), got {percentile}")
    return float(np.percentile(e, percentile))


def percentile_scale(values, percentile: float) -> float:
    """A part's scale: the `percentile` of its finite scores on held-out normal
    frames, at least 1e-6 (a part that never fires still divides safely)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise InputError("no scored frames to scale the parts on (clips shorter than a window?)")
    return max(float(np.percentile(v, percentile)), 1e-6)


def scaled_max(parts, scales) -> np.ndarray:
    """(..., k) part scores and their k scales -> (...) the largest part in units
    of its scale: max_k parts[..., k] / scales[k] (NaN where a part has none yet)."""
    return (np.asarray(parts, np.float64) / np.asarray(scales, np.float64)).max(axis=-1)
