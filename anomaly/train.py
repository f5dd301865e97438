"""Train the anomaly detector on normal clips only.

    python -m anomaly.train --videos "data/crowd/train/*.mp4" --out runs/anomaly

Clips are split by clip into training and validation (--val-fraction; a
single clip is split in time). With --objective reconstruct (the default) the
ConvLSTM autoencoder learns to reconstruct windows of normal features (MSE);
with --objective motion the motion model of anomaly/motion.py learns how people
move where they stand, and its two part scores are scaled on the validation
clips. Both: Adam, ReduceLROnPlateau, early stopping on the validation clips.
The threshold is the --percentile of frame scores on the held-out validation
clips, never on training data. OUT gets ae.keras (the network) and
detector.json (features, normaliser, window, stride, threshold, losses, epoch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cli import CliParser, UserError, output_dir, run_cli  # noqa: E402
from distribute import STRATEGIES  # noqa: E402


def parse_args(argv=None):
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help='glob of normal clips, e.g. "data/crowd/train/*.mp4"')
    p.add_argument("--out", default=os.path.join("runs", "anomaly"))
    p.add_argument("--objective", default="reconstruct", choices=["reconstruct", "motion"],
                   help="reconstruct: a ConvLSTM autoencoder reconstructs windows of features (default); "
                        "motion: a model of how people move where they stand (anomaly/motion.py)")
    p.add_argument("--preset", default="light", choices=["light", "strong"], help="autoencoder size")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8, help="per replica (global = this x replicas)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sequence-length", type=int, default=16, help="frames per window")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--stride", type=int, default=4, help="stride of the training windows")
    p.add_argument("--score-stride", type=int, default=1,
                   help="score a window every N frames (saved; 1 = every frame scored by its own window, "
                        "chosen on validation; 4 = real time on a 2-core CPU)")
    p.add_argument("--percentile", type=float, default=95.0,
                   help="threshold percentile of held-out normal errors (90 stricter, 98 looser)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--score", default="local", choices=["mean", "local"],
                   help="frame score: the worst cell of an 8x8 grid over the error map (local, chosen on validation) "
                        "or the mean error over the frame")
    p.add_argument("--border", type=int, default=4,
                   help="pixels at each edge (at --image-size) left out of the frame score (4 chosen on validation)")
    p.add_argument("--smooth", type=int, default=8,
                   help="frame score = max over the last N frames' window scores (1 = off; 8 chosen on "
                        "the synthetic benchmark's validation clips)")
    p.add_argument("--flow", default="farneback", choices=["farneback", "dis"])
    p.add_argument("--mog2-learning-rate", type=float, default=-1.0,
                   help="background-model learning rate (-1: 1/history; small keeps standing people visible)")
    p.add_argument("--still-speed", type=float, default=0.0,
                   help="add a standing-density channel, density * exp(-speed / this) (0 = off)")
    p.add_argument("--coords", choices=["true", "false"], default="false",
                   help="give the autoencoder the pixel coordinates (location-aware normal motion)")
    p.add_argument("--augment", type=int, default=0,
                   help="augmented copies per training clip (random crop, flip, brightness/contrast, speed)")
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames per clip")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute, as in the predictor's train.py (see distribute.py)")
    p.add_argument("--verbose", type=int, default=2)
    return p.parse_args(argv)


def augment_clip(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random variant of a clip: crop (80-100%), horizontal flip, brightness /
    contrast, temporal speed x0.5 (repeat frames) or x2 (drop frames)."""
    import cv2

    t, h, w = frames.shape[:3]
    scale = rng.uniform(0.8, 1.0)
    ch, cw = int(h * scale), int(w * scale)
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = frames[:, y0:y0 + ch, x0:x0 + cw]
    out = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in out])
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    speed = rng.choice([0.5, 1.0, 2.0])
    if speed == 2.0:
        out = out[::2]
    elif speed == 0.5:
        out = np.repeat(out, 2, axis=0)[:t]
    return np.ascontiguousarray(out)


def split_clips(clips: list, val_fraction: float):
    """(train clips, validation clips): by clip, or in time for a single clip."""
    if len(clips) == 1:
        c = clips[0]
        cut = int(len(c) * (1 - val_fraction))
        return [c[:cut]], [c[cut:]]
    n_val = max(1, int(round(len(clips) * val_fraction)))
    return clips[:-n_val], clips[-n_val:]


def train(args) -> dict:
    import distribute
    from anomaly.detector import Detector, check_border, percentile_threshold, windows
    from anomaly.features import FeatureConfig, Normalizer, clip_features
    from anomaly.video import expand_videos, read_video

    if args.sequence_length < 2 or min(args.stride, args.score_stride, args.epochs, args.batch_size) < 1:
        raise UserError("--sequence-length must be >= 2 and --stride, --score-stride, --epochs, --batch-size >= 1")
    if args.smooth < 1:
        raise UserError("--smooth must be >= 1")
    check_border(args.border, args.image_size, "--border")
    if not 0 < args.percentile < 100 or not 0 < args.val_fraction < 1:
        raise UserError("--percentile must be in (0, 100) and --val-fraction in (0, 1)")
    if not (args.mog2_learning_rate == -1 or 0 <= args.mog2_learning_rate <= 1):
        raise UserError(f"--mog2-learning-rate must be -1 or in [0, 1], got {args.mog2_learning_rate}")
    if args.still_speed < 0:
        raise UserError(f"--still-speed must be >= 0, got {args.still_speed}")
    paths = expand_videos(args.videos)
    strategy = distribute.make_strategy(args.strategy)  # before any TensorFlow work
    out = output_dir(distribute.chief_out(args.out, strategy))  # before the fit, not after
    clips = [read_video(p, args.max_frames) for p in paths]
    tr_clips, va_clips = split_clips(clips, args.val_fraction)
    rng = np.random.default_rng(args.seed)
    tr_clips = tr_clips + [augment_clip(c, rng) for c in tr_clips for _ in range(args.augment)]
    fcfg = FeatureConfig(image_size=args.image_size, flow=args.flow, mog2_learning_rate=args.mog2_learning_rate,
                         still_speed=args.still_speed)
    t0 = time.time()
    tr_feats = [clip_features(c, fcfg) for c in tr_clips]
    va_feats = [clip_features(c, fcfg) for c in va_clips]
    feat_s = time.time() - t0
    norm = Normalizer.fit(tr_feats)
    w = 2 if args.objective == "motion" else args.sequence_length  # motion: a frame and the one before
    xtr = np.concatenate([norm(windows(f, w, args.stride)) for f in tr_feats])
    xva = np.concatenate([norm(windows(f, w, args.stride)) for f in va_feats])
    if len(xtr) == 0 or len(xva) == 0:
        raise UserError(f"clips too short for windows of {w} frames (training windows {len(xtr)}, "
                        f"validation windows {len(xva)})")
    if args.objective == "motion":
        with strategy.scope():
            net, fit_meta = fit_motion(args, tr_feats, va_feats, norm)
    else:
        net, fit_meta = fit_autoencoder(args, strategy, xtr, xva, fcfg.channels)
    meta = {"objective": args.objective, "features": fcfg.to_dict(),
            "normalizer": {"mean": norm.mean, "std": norm.std},
            "window": w, "stride": args.score_stride, "train_stride": args.stride,
            "threshold": None, "percentile": args.percentile,
            "score": args.score, "smooth": args.smooth, "border": args.border, **fit_meta,
            "train_clips": len(tr_clips), "val_clips": len(va_clips), "videos": paths,
            "feature_seconds": round(feat_s, 1), "seed": args.seed,
            "replicas": strategy.num_replicas_in_sync, "global_batch": distribute.global_batch(strategy, args.batch_size)}
    meta["threshold"] = 0.0
    det = Detector([net], [meta])
    val_scores = np.concatenate([det.score_features(f) for f in va_feats])
    meta["threshold"] = percentile_threshold(val_scores, args.percentile)
    Detector.save(out, net, meta)
    return meta


def fit_autoencoder(args, strategy, xtr, xva, channels):
    """The ConvLSTM autoencoder fitted on normal windows: (model, its detector.json entries)."""
    import dataclasses

    import keras

    import distribute
    from anomaly.model import AE_PRESETS, build_autoencoder

    cfg = dataclasses.replace(AE_PRESETS[args.preset], window=args.sequence_length, image_size=args.image_size,
                              coords=args.coords == "true", channels=channels)
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        ae = build_autoencoder(cfg)
        ae.compile(optimizer=keras.optimizers.Adam(args.lr), loss="mse")
    cbs = [keras.callbacks.ReduceLROnPlateau(patience=max(1, args.patience // 2), factor=0.5),
           keras.callbacks.EarlyStopping(patience=args.patience, restore_best_weights=True),
           keras.callbacks.TerminateOnNaN()]
    t0 = time.time()
    hist = ae.fit(xtr, xtr, validation_data=(xva, xva), epochs=args.epochs,
                  batch_size=distribute.global_batch(strategy, args.batch_size),
                  callbacks=cbs, verbose=args.verbose, shuffle=True)
    return ae, {"autoencoder": cfg.to_dict(), "preset": args.preset, "fit_seconds": round(time.time() - t0, 1),
                **_losses(hist)}


def fit_motion(args, tr_feats, va_feats, norm):
    """The motion model of `anomaly.motion` fitted on normal frames, and its part
    scales on the held-out clips: (model, its detector.json entries)."""
    import keras

    from anomaly import motion
    from anomaly.model import MotionConfig

    keras.utils.set_random_seed(args.seed)
    t0 = time.time()
    net, cfg, hist = motion.fit(tr_feats, va_feats, norm, MotionConfig(image_size=args.image_size, border=args.border),
                                lr=args.lr, epochs=args.epochs, batch_size=4 * args.batch_size,
                                patience=args.patience, verbose=args.verbose)
    fit_s = round(time.time() - t0, 1)
    return net, {"motion": cfg.to_dict(), "scales": motion.calibrate_scales(net, cfg, norm, va_feats),
                 "fit_seconds": fit_s, **_losses(hist)}


def _losses(hist) -> dict:
    best = int(np.argmin(hist.history["val_loss"]))
    return {"train_loss": float(hist.history["loss"][best]), "val_loss": float(hist.history["val_loss"][best]),
            "epoch": best + 1, "epochs_run": len(hist.history["loss"])}


def main(argv=None) -> int:
    args = parse_args(argv)

    def run():
        meta = train(args)
        print(f"saved {args.out}: threshold {meta['threshold']:.4f} ({meta['percentile']:g}th percentile of "
              f"held-out normal scores), val_loss {meta['val_loss']:.4f} at epoch {meta['epoch']}")
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
