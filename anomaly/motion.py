"""The motion model: how people normally move where they are.

Shown only *where* people are in one frame (the normalised density channel and
the pixel coordinates), a small CNN (`anomaly.model.build_motion_model`)
predicts for every cell of the detector's grid

    logits  p(motion bin | cell, who is where): the bins of `anomaly.location`
            (empty, occupied and still, 8 directions x 3 speed bands of the
            cell's mean flow);
    speed   the cell's mean flow speed.

It is trained on normal clips only (cross-entropy on the observed bins, MSE on
the speeds), so it learns which way and how fast people walk in each place.
Each frame gets two scores from the model, and a third from counts:

    surprise  -log p(observed bin) of each cell, reduced like the detector's
              score: the worst cell ("local") or the mean ("mean");
    pace      |log((observed + m) / (predicted + m))|, the frame's mean flow
              speed against the speed the model expects of the people where
              they stand (m = `min_speed`): a crowd that stops, or flees;
    counts    (when the detector has them) the mean over the cells of
              -log p(observed bin | cell) under per-location counts of the
              training frames (`anomaly.location`): many cells a little
              unusual at once, such as a group crossing or gathering, which
              the worst cell of a model that knows the crowd around it misses.

Surprise sees one cell at a time, so a whole crowd standing still (a bin the
cells see now and then in normal frames) hardly moves it; the pace, summed over
the frame first, does. The detector's frame score is the largest part divided
by its scale, max(surprise / s_surprise, pace / s_pace, counts / s_counts)
(`anomaly.cells.scaled_max`), the
scales being the parts' 99th percentiles on held-out normal clips
(`calibrate_scales`), then the detector's causal smoothing.

One frame, not a window: given the density sequence a ConvLSTM learns to read
the motion off it, and then predicts an anomalous motion as well as a normal one
(the comparison: the log in anomaly/README.md at commit 71d2d9b).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from anomaly.cells import cell_grid, percentile_scale, reduce_cells
from anomaly.location import LocationModel
from anomaly.config import MotionConfig

DENSITY = 2  # the density channel of the raw features
# Each part is divided by this percentile of its values on held-out normal clips: the
# lowest within 0.005 of the best of 90-100 on validation clips (the log in anomaly/README.md at 71d2d9b);
# higher ones rest on a handful of frames.
SCALE_PERCENTILE = 99.0
SPEED_WEIGHT = 0.1  # of the speed loss beside the bins' cross-entropy (early stopping watches their sum)
# The moving speed bands split at these percentiles of the training clips' moving cells, so
# they follow the camera's frame rate and distance; the top band holds what normal footage
# shows in one moving cell of 2000 (chosen on validation: anomaly/README.md, Speed bands).
BAND_PERCENTILES = (80.0, 99.95)


def bin_model(cfg: MotionConfig) -> LocationModel:
    """The motion bins the model predicts (a `LocationModel` without counts)."""
    return LocationModel(cfg.directions, cfg.speed_edges, cfg.occupied, cfg.border)


def cell_speeds(raw: np.ndarray, border: int) -> np.ndarray:
    """Raw features (T, S, S, C) -> each cell's mean flow speed, (T, n, n)."""
    return cell_grid(np.hypot(raw[..., 0], raw[..., 1]), border)


def clip_cell_speeds(feats: list, border: int) -> np.ndarray:
    """Every cell's mean flow speed over clips' raw features (frame 0 of each,
    which has no flow, left out), flattened: what the fit reads the scene's
    speeds from."""
    return np.concatenate([cell_speeds(f[1:], border).ravel() for f in feats])


def mean_cell_speed(speeds: np.ndarray) -> float:
    """The mean of `clip_cell_speeds`: the speed head's scale (at least 1e-3)."""
    return float(max(speeds.mean(), 1e-3))


def fitted_speed_edges(speeds: np.ndarray, still: float) -> tuple:
    """The speed band edges for the training clips' `clip_cell_speeds`: `still`
    (below it a cell is still or empty: flow's noise floor, not the scene's),
    then for each of `BAND_PERCENTILES` q the q-th percentile of the cell speeds
    at or above `still`, moved just above it where ties would leave more than
    (100 - q)% of those cells at or above it (a scene whose people all walk at
    one speed keeps them below the top band). Nothing moving: every edge is `still`."""
    speeds = np.asarray(speeds, np.float64)
    moving = speeds[speeds >= still]
    edges = [float(still)]
    for q in BAND_PERCENTILES:
        e = max(edges[-1], float(np.percentile(moving, q))) if moving.size else edges[-1]
        if moving.size and np.mean(moving >= e) > (100 - q) / 100:
            e = float(np.nextafter(e, np.inf))
        edges.append(e)
    return tuple(edges)


def fitted_config(cfg: MotionConfig, train_feats: list) -> MotionConfig:
    """`cfg` with what the training clips' raw features set, from their cell
    speeds read once: speed_scale (`mean_cell_speed`) and the speed band edges
    above the still edge (`fitted_speed_edges`)."""
    speeds = clip_cell_speeds(train_feats, cfg.border)
    return dataclasses.replace(cfg, speed_scale=mean_cell_speed(speeds),
                               speed_edges=fitted_speed_edges(speeds, cfg.speed_edges[0]))


def targets(raw: np.ndarray, cfg: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """What the model learns from a clip's raw features (T, S, S, C): the motion
    bins (T, n, n) int and the cell speeds / speed_scale (T, n, n)."""
    return bin_model(cfg).motion_bins(raw), cell_speeds(raw, cfg.border) / cfg.speed_scale


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def cell_surprise(logits: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits (T, n, n, bins) and the observed bins (T, n, n) int ->
    -log p(observed bin) of every cell (T, n, n), and the log-probabilities."""
    lp = log_softmax(np.asarray(logits, np.float64))
    return -np.take_along_axis(lp, b[..., None], axis=-1)[..., 0], lp


def fit_counts(feats: list, cfg: MotionConfig) -> np.ndarray:
    """Per-location counts of the motion bins over normal clips' raw features
    (frame 0 of each, which has no flow, left out): (n, n, bins) int."""
    return bin_model(cfg).fit([f[1:] for f in feats]).counts


def frame_parts(outputs: dict, raw: np.ndarray, cfg: MotionConfig, how: str = "local",
                counts=None) -> np.ndarray:
    """The scores of each frame.

    Args:
        outputs: the model's outputs for the frames: "logits" (T, n, n, bins)
            and "speed" (T, n, n).
        raw: the frames' raw features (T, S, S, C).
        cfg: the model's config.
        how: "local" (the worst cell's surprise) or "mean".
        counts: per-location counts (n, n, bins) of `fit_counts`, or None.

    Returns:
        (T, 2): surprise and pace; (T, 3) with the counts' mean surprise
        after them when `counts` are given.
    """
    location = bin_model(cfg)
    b = location.motion_bins(raw)
    surprise = reduce_cells(cell_surprise(outputs["logits"], b)[0], how)
    expected = np.maximum(np.asarray(outputs["speed"], np.float64), 0).mean(axis=(1, 2)) * cfg.speed_scale
    seen = cell_speeds(raw, cfg.border).mean(axis=(1, 2))
    pace = np.abs(np.log((seen + cfg.min_speed) / (expected + cfg.min_speed)))
    if counts is None:
        return np.stack([surprise, pace], axis=1)
    location.counts = counts
    return np.stack([surprise, pace, reduce_cells(location.bin_surprise(b), "mean")], axis=1)


def fit(train_feats: list, val_feats: list, density_norm, cfg: MotionConfig, *, lr: float = 1e-3,
        epochs: int = 30, batch_size: int = 32, patience: int = 6, verbose: int = 2, callbacks=()):
    """Trains a motion model on normal clips' raw features.

    Args:
        train_feats, val_feats: lists of (T, S, S, C) raw features (frame 0 of
            each clip, which has no flow, is left out).
        density_norm: callable raw features -> normalised (the detector's Normalizer).
        cfg: the model's config (its speed_scale and speed band edges above the
            first are set here from the training clips).
        callbacks: more Keras callbacks for the fit (e.g. TensorBoard).

    Returns:
        (model, cfg with speed_scale and speed_edges, keras History).
    """
    import keras

    from anomaly.model import build_motion_model, fit_callbacks

    cfg = fitted_config(cfg, train_feats)

    def arrays(feats):
        x = np.concatenate([density_norm(f[1:])[..., DENSITY:DENSITY + 1] for f in feats])
        bins, speed = zip(*(targets(f[1:], cfg) for f in feats))
        return x, {"logits": np.concatenate(bins), "speed": np.concatenate(speed).astype(np.float32)}

    xtr, ytr = arrays(train_feats)
    xva, yva = arrays(val_feats)
    model = build_motion_model(cfg)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "speed": "mse"},
                  loss_weights={"logits": 1.0, "speed": SPEED_WEIGHT})
    hist = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=epochs, batch_size=batch_size,
                     callbacks=fit_callbacks(patience, callbacks), verbose=verbose, shuffle=True)
    return model, cfg, hist


def calibrate_scales(model, cfg: MotionConfig, density_norm, feats: list,
                     percentile: float = SCALE_PERCENTILE, counts=None) -> dict:
    """{reduction: [s_surprise, s_pace] (+ s_counts with `counts`)}: each part's
    `percentile` over the frames of held-out normal clips (raw features, frame 0
    of each left out), for both reductions of the surprise, so that either can be scored."""
    parts = {"local": [], "mean": []}
    for f in feats:
        y = model.predict(density_norm(f[1:])[..., DENSITY:DENSITY + 1], verbose=0)
        for how, p in parts.items():
            p.append(frame_parts(y, f[1:], cfg, how, counts))
    return {how: [percentile_scale(col, percentile) for col in np.concatenate(p).T] for how, p in parts.items()}
