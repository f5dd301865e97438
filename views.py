"""Test-time averaging: a forecast as the mean of the forecasts of the frames
seen under the square frame's symmetries (transposed, flipped).

    python evaluate.py --views transpose     python predict.py clip.gif --views flips

Moving MNIST's motion (straight lines bouncing inside a square) is the same
under each symmetry; the digits' shapes are not, so a view the model never
trained on forecasts worse alone, and the mean of several forecasts trades
sharpness for error (results/README.md, "Test-time averaging"). Papers score
one pass: numbers with views are not theirs to compare with.
"""

from __future__ import annotations

import numpy as np

from cli import InputError

# Each view is (transpose, flip rows, flip columns), applied in that order.
VIEWS = {
    "none": ((False, False, False),),
    "transpose": ((False, False, False), (True, False, False)),
    "flips": tuple((False, r, c) for r in (False, True) for c in (False, True)),
    "dihedral": tuple((t, r, c) for t in (False, True) for r in (False, True) for c in (False, True)),
}


def to_view(frames, view, inverse: bool = False) -> np.ndarray:
    """Frames (N, T, S, S, C) seen under `view` = (transpose, flip rows, flip
    columns), applied in that order; `inverse=True` maps a view's frames back."""
    transpose, rows, cols = view
    x = np.asarray(frames)
    if transpose and not inverse:
        x = np.swapaxes(x, 2, 3)
    if rows:
        x = x[:, :, ::-1]
    if cols:
        x = x[:, :, :, ::-1]
    if transpose and inverse:
        x = np.swapaxes(x, 2, 3)
    return np.ascontiguousarray(x)


def over_views(fn, frames, views: str = "none"):
    """The mean over the views `VIEWS[views]` of `fn` applied to the frames seen
    under each view, each result mapped back.

    Args:
        fn: float32 frames (N, T, S, S, C) -> frames (N, T', S, S, C), or a
            tuple of such arrays (as `forecast`).
        frames: float32 (N, T, S, S, C).
        views: a key of `VIEWS`; "none" is `fn(frames)`.

    Returns:
        What `fn` returns, averaged. A mean of causal forecasts is causal: output
        t still reads input frames <= t only.
    """
    if views not in VIEWS:
        raise InputError(f"views must be one of {sorted(VIEWS)}, got {views!r}")
    sums, single = None, False
    for v in VIEWS[views]:
        out = fn(to_view(frames, v))
        single = not isinstance(out, tuple)
        back = [to_view(o, v, inverse=True).astype(np.float32) for o in ((out,) if single else out)]
        sums = back if sums is None else [s + b for s, b in zip(sums, back)]
    means = tuple(s / len(VIEWS[views]) for s in sums)
    return means[0] if single else means
