"""Motion-model variants on the lanes scene's validation clips (choices, not test
results): the per-frame model with 3x3 or 5x5 pixel kernels, and a variant that
sees a window of density frames through a cell-level ConvLSTM.

    python benchmarks/motion_variants.py --data data/crowd/lanes --out results/anomaly/lanes/motion_variants.json

Each variant is trained like `python -m anomaly.train --objective motion
--mog2-learning-rate 0.001 --epochs 30` (the same clips: the first 8 training
clips to fit, the last 2 held out for early stopping and the part scales),
scored with the detector's defaults of the time (worst cell inside a 4-pixel
border, smoothing 8; the two-part score, surprise and pace, each scaled by its
95th percentile on the held-out clips) and reported as pooled frame ROC-AUC per
anomaly group on the validation clips. Frames from the 16th on are scored for
every variant, so the window variant loses no frames the others keep. Writes
OUT (JSON).
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

import common  # noqa: F401  (puts the repository root on sys.path)

FIRST = 15  # first scored frame, for every variant


def load(folder, cfg):
    from anomaly.features import clip_features
    from anomaly.video import read_labels, read_video

    out = {}
    for p in sorted(glob.glob(os.path.join(folder, "*.mp4"))):
        stem = os.path.splitext(os.path.basename(p))[0]
        lp = p[:-4] + ".labels.txt"
        raw = clip_features(read_video(p), cfg)
        out[stem] = (raw, read_labels(lp) if os.path.isfile(lp) else np.zeros(len(raw), int))
    return out


def per_group(scores: dict, clips: dict) -> dict:
    from anomaly import scoring
    from anomaly.evaluate import clip_kind, kind_groups

    kinds = {k: clip_kind(k) for k in clips}
    res = {}
    for group, members in kind_groups(list(kinds.values())).items():
        sel = [k for k in clips if kinds[k] in members]
        s = np.concatenate([scores[k][FIRST:] for k in sel])
        y = np.concatenate([clips[k][1][FIRST:] for k in sel])
        res[group] = round(scoring.roc_auc(s, y), 3)
    return res


def windowed_model(cfg, window):
    """Per-frame pixel convolutions as in `build_motion_model`, then a ConvLSTM over
    the window at cell resolution: (N, W, S, S, 1) -> per-frame logits and speeds."""
    import keras
    from keras import layers

    from anomaly.model import CoordChannels

    s, b, n, c = cfg.frame_size, cfg.border, cfg.grid, cfg.cell
    end = s - b - n * c
    inp = keras.Input((window, s, s, 1))
    x = layers.TimeDistributed(layers.Cropping2D(((b, end), (b, end))))(inp)
    x = CoordChannels()(x)
    for f in cfg.widths:
        x = layers.Conv3D(f, (1, cfg.kernel, cfg.kernel), padding="same", activation="relu")(x)
    x = layers.TimeDistributed(layers.AveragePooling2D(c))(x)
    for f in cfg.cell_widths:
        x = layers.ConvLSTM2D(f, 3, padding="same", return_sequences=True)(x)
    logits = layers.Conv3D(cfg.bins, 1, name="logits")(x)
    speed = layers.Reshape((window, n, n), name="speed")(layers.Conv3D(1, 1)(x))
    return keras.Model(inp, {"logits": logits, "speed": speed})


def run_windowed(train, held, clips, norm, cfg, window, epochs):
    import keras

    from anomaly import motion
    from anomaly.cells import causal_max, scaled_max, windows

    def arrays(feats):
        xs, bins, speeds = [], [], []
        for f in feats:
            b, s = motion.targets(f[1:], cfg)
            xs.append(windows(norm(f[1:])[..., 2:3], window, 2))
            bins.append(windows(b, window, 2))
            speeds.append(windows(s, window, 2))
        return np.concatenate(xs), {"logits": np.concatenate(bins), "speed": np.concatenate(speeds).astype("float32")}

    keras.utils.set_random_seed(0)
    model = windowed_model(cfg, window)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "speed": "mse"},
                  loss_weights={"logits": 1.0, "speed": motion.SPEED_WEIGHT})
    xtr, ytr = arrays(train)
    xva, yva = arrays(held)
    model.fit(xtr, ytr, validation_data=(xva, yva), epochs=epochs, batch_size=8, verbose=0,
              callbacks=[keras.callbacks.ReduceLROnPlateau(patience=3, factor=0.5),
                         keras.callbacks.EarlyStopping(patience=6, restore_best_weights=True)])

    def parts(raw):  # each frame from the window that ends on it
        wins = windows(norm(raw)[..., 2:3], window, 1)
        y = {k: v[:, -1] for k, v in model.predict(wins, batch_size=64, verbose=0).items()}
        p = np.full((len(raw), 2), np.nan)
        p[window - 1:] = motion.frame_parts(y, raw[window - 1:], cfg, "local")
        return p

    scales = np.nanpercentile(np.concatenate([parts(f) for f in held]), 95, axis=0)
    return {k: causal_max(scaled_max(parts(raw), scales), 8) for k, (raw, _) in clips.items()}


def run_frame(train, held, clips, norm, cfg, epochs):
    import keras

    from anomaly import motion
    from anomaly.detector import from_models

    keras.utils.set_random_seed(0)
    net, cfg, _ = motion.fit(train, held, norm, cfg, epochs=epochs, verbose=0)
    meta = {"objective": "motion", "features": {}, "normalizer": {"mean": norm.mean, "std": norm.std},
            "window": 2, "stride": 1, "threshold": 0.0, "score": "local", "smooth": 8, "border": cfg.border,
            "motion": cfg.to_dict(), "scales": motion.calibrate_scales(net, cfg, norm, held, 95.0)}
    det = from_models([net], [meta])
    return {k: det.score_features(raw) for k, (raw, _) in clips.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join("data", "crowd", "lanes"))
    p.add_argument("--out", default=os.path.join("results", "anomaly", "lanes", "motion_variants.json"))
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)

    from anomaly.features import FeatureConfig, Normalizer
    from anomaly.config import MotionConfig

    fcfg = FeatureConfig(mog2_learning_rate=0.001)
    train = [raw for raw, _ in load(os.path.join(args.data, "train"), fcfg).values()]
    fit_clips, held = train[:-2], train[-2:]  # as anomaly.train splits 10 clips
    val = load(os.path.join(args.data, "val"), fcfg)
    norm = Normalizer.fit(fit_clips)
    results = {}
    for name, cfg in (("frame, 3x3 kernels (shipped)", MotionConfig()),
                      ("frame, 5x5 kernels", MotionConfig(kernel=5))):
        results[name] = per_group(run_frame(fit_clips, held, val, norm, cfg, args.epochs), val)
        print(name, results[name], flush=True)
    from anomaly.motion import fitted_config

    cfg = fitted_config(MotionConfig(), fit_clips)
    name = "window of 8 frames, cell-level ConvLSTM"
    results[name] = per_group(run_windowed(fit_clips, held, val, norm, cfg, 8, args.epochs), val)
    print(name, results[name], flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"data": args.data, "split": "val", "first_scored_frame": FIRST, "roc_auc": results}, f, indent=2)


if __name__ == "__main__":
    main()
