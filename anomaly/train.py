"""Train the anomaly detector on normal clips only.

    python -m anomaly.train --videos "data/crowd/train/*.mp4" --out runs/anomaly

Clips are split by clip into training and validation (--val-fraction; a
single clip is split in time). The default detector (--objective fused,
anomaly/fusion.py) has two parts fitted on the same features: the ConvLSTM
autoencoder (--objective reconstruct alone) learns to reconstruct windows of
normal features (MSE), and the motion model of anomaly/motion.py (--objective
motion alone) learns how people move where they stand. Each: Adam,
ReduceLROnPlateau, early stopping on the validation clips. Each part is scaled
on the held-out validation clips, and the threshold is the --percentile of
frame scores there, never on training data. OUT gets detector.json (features,
normaliser, window, stride, threshold, losses, epoch) and ae.keras (the
network); a fused detector's OUT gets its detector.json (scales, threshold)
and one such folder per part.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

import runio  # noqa: E402
from cli import CliParser, InputError, UserError, run_cli, seed_arg  # noqa: E402
from distribute import STRATEGIES  # noqa: E402

# --density -> FeatureConfig.density (the person density the features carry)
DENSITIES = {"mog2": "mog2", "hog": "hog", "yolo-pose": "keypoints"}

# Settings that only some objectives read: given with another, they are refused
# instead of silently ignored (the fused detector reads both parts' settings).
AE_ONLY, MOTION_ONLY = ("reconstruct", "fused"), ("motion", "fused")
ONE_OBJECTIVE = {"preset": AE_ONLY, "seq_len": AE_ONLY, "window_stride": AE_ONLY, "still_speed": AE_ONLY,
                 "scale_percentile": MOTION_ONLY, "counts": MOTION_ONLY}


@dataclass
class TrainSettings:
    """What `train` needs; the command line fills it (one flag per field,
    `--seq-len` for seq_len) and `python -m anomaly.train --help` describes each.
    window_stride: stride of the training windows; stride: score a window every
    N frames (saved in the detector, as detect/evaluate/calibrate's --stride)."""

    videos: str
    out: str = os.path.join("runs", "anomaly")
    objective: str = "fused"
    preset: str = "light"
    epochs: int = 30
    batch_size: int = 8               # windows per replica
    lr: float = 1e-3                  # Adam
    seq_len: int = 16                 # frames per autoencoder window
    frame_size: int = 64              # features at S x S
    window_stride: int = 4            # between training windows
    stride: int = 1                   # between scored windows (saved)
    percentile: float = 95.0          # of held-out normal scores: the threshold
    scale_percentile: float = 99.0    # motion: of each part's held-out normal values, its scale
    counts: bool = True               # motion: the per-location counts' part of the score
    val_fraction: float = 0.2         # of the clips, held out
    score: str = "local"              # frame reduction: worst cell or "mean"
    border: int = 4                   # pixels left out at each edge
    smooth: int = 8                   # causal max over N frames
    density: str = "mog2"             # or "hog" (OpenCV 4), "yolo-pose" (Ultralytics, the user's install and weights)
    pose_weights: str | None = None   # yolo-pose: its weights file (None: Ultralytics' yolov8n-pose.pt)
    mog2_learning_rate: float = 0.001  # -1: OpenCV's 1 / history, which absorbs people who stand
    mog2_warmup: int = 10             # frames at the rate 1 / (t + 1) first (no ghosts)
    still_speed: float = 0.0          # > 0: a standing-density channel
    augment: int = 0                  # augmented copies per training clip
    patience: int = 6                 # early stopping
    seed: int = 0
    overwrite: bool = False           # replace a detector already in `out`
    tensorboard: str | None = None    # also log the fit for TensorBoard here
    max_frames: int | None = None
    strategy: str = "auto"
    verbose: int = 2

    def check(self) -> None:
        """Every value's range, before any work; an InputError names the flag."""
        from anomaly.config import check_border

        for f in dataclasses.fields(self):  # nan passes a comparison, inf most: neither is a setting
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")

        ints = {"--seq-len": (self.seq_len, 2), "--window-stride": (self.window_stride, 1),
                "--stride": (self.stride, 1), "--epochs": (self.epochs, 1), "--batch-size": (self.batch_size, 1),
                "--smooth": (self.smooth, 1), "--patience": (self.patience, 1), "--augment": (self.augment, 0),
                "--frame-size": (self.frame_size, 8), "--mog2-warmup": (self.mog2_warmup, 0)}
        for flag, (value, low) in ints.items():
            if value < low:
                raise InputError(f"{flag} must be >= {low}, got {value}")
        if self.max_frames is not None and self.max_frames < 2:
            raise InputError(f"--max-frames must be >= 2, got {self.max_frames}")
        check_border(self.border, self.frame_size, "--border")
        if not self.lr > 0:
            raise InputError(f"--lr must be > 0, got {self.lr}")
        if not 0 < self.percentile < 100:
            raise InputError(f"--percentile must be in (0, 100), got {self.percentile}")
        if not 0 < self.scale_percentile <= 100:
            raise InputError(f"--scale-percentile must be in (0, 100], got {self.scale_percentile}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if not (self.mog2_learning_rate == -1 or 0 <= self.mog2_learning_rate <= 1):
            raise InputError(f"--mog2-learning-rate must be -1 or in [0, 1], got {self.mog2_learning_rate}")
        if self.still_speed < 0:
            raise InputError(f"--still-speed must be >= 0, got {self.still_speed}")
        if self.pose_weights is not None and self.density != "yolo-pose":
            raise InputError(f"--pose-weights applies to --density yolo-pose only; this detector is "
                             f"--density {self.density}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for field, objectives in ONE_OBJECTIVE.items():
            value = getattr(self, field)
            if self.objective not in objectives and value != defaults[field]:
                flag = "--" + field.replace("_", "-")
                raise InputError(f"{flag} {str(value).lower()} applies to --objective {' or '.join(objectives)} "
                                 f"only; this detector is --objective {self.objective}")


def parse_args(argv=None) -> TrainSettings:
    d = TrainSettings
    p = CliParser(__doc__, "python -m anomaly.train")

    def setting(name: str, help: str, **kw):
        """--NAME for the TrainSettings field NAME: its default, its type (the
        default's, unless choices or a type are given) and the default named at
        the end of the help."""
        default = getattr(d, name)
        if "choices" not in kw:
            kw.setdefault("type", type(default))
        p.add_argument("--" + name.replace("_", "-"), default=default, help=f"{help} (default: %(default)s)", **kw)

    p.add_argument("--videos", required=True, help='glob of normal clips, e.g. "data/crowd/train/*.mp4"')
    setting("out", "detector folder")
    p.add_argument("--overwrite", action="store_true", help="replace a detector already in --out")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also log the fit's losses for TensorBoard into DIR (tensorboard --logdir DIR)")
    setting("objective", "fused: both of the others, each scaled on the held-out clips, the frame scored by the "
            "more unusual (anomaly/fusion.py); reconstruct: a ConvLSTM autoencoder reconstructs windows of "
            "features; motion: a model of how people move where they stand (anomaly/motion.py)",
            choices=["fused", "reconstruct", "motion"])
    setting("preset", "autoencoder size", choices=["light", "strong"])
    setting("epochs", "epochs of each network's fit")
    setting("batch_size", "windows per replica (global = this x replicas; the motion model takes 4x as many frames)")
    setting("lr", "Adam learning rate")
    setting("seq_len", "frames per autoencoder window")
    setting("frame_size", "features are computed at this size S x S")
    setting("window_stride", "stride of the training windows")
    setting("stride", "score a window every N frames (saved; 1 = every frame scored by its own window, chosen on "
            "validation; 2 is faster and less accurate: anomaly/README.md, Speed)")
    setting("percentile", "threshold percentile of held-out normal scores (90: a lower threshold, more alarms; "
            "98: fewer)")
    setting("scale_percentile", "motion objective: each part of the score is divided by this percentile of its "
            "values on the held-out normal clips (chosen on validation)")
    p.add_argument("--counts", choices=["true", "false"], default="true",
                   help="motion objective: add the per-location counts' surprise as a third part of the score "
                        "(default: true)")
    setting("val_fraction", "share of the clips held out")
    setting("score", "frame score: the worst cell of an 8x8 grid over the error map (local, chosen on "
            "validation) or the mean error over the frame", choices=["mean", "local"])
    setting("border", "pixels at each edge (at --frame-size) left out of the frame score (chosen on validation)")
    setting("smooth", "frame score = max over the last N frames' window scores (1 = off; chosen on the synthetic "
            "benchmark's validation clips)")
    setting("density", "person density: MOG2 background subtraction (no weights), OpenCV's HOG people detector "
            "(OpenCV 4: pip install 'opencv-python-headless<5') or YOLO-pose keypoints (needs pip install "
            "ultralytics and its weights)", choices=sorted(DENSITIES))
    p.add_argument("--pose-weights", default=None, metavar="FILE",
                   help="--density yolo-pose: the YOLO-pose weights file, recorded in the detector (default: "
                        "yolov8n-pose.pt, which Ultralytics fetches)")
    setting("mog2_learning_rate", "background-model learning rate (-1: 1/history; small keeps standing people "
            "visible)")
    setting("mog2_warmup", "the first N frames of each clip or stream build the background quickly (rate "
            "1/(t+1)), so people in the first frame leave no ghost")
    setting("still_speed", "add a standing-density channel, density * exp(-speed / this) (0 = off)")
    setting("augment", "augmented copies per training clip (random crop, flip, brightness/contrast, speed)")
    setting("patience", "early-stopping patience")
    setting("seed", "seed of the weights and augmentation", type=seed_arg)
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames per clip")
    setting("strategy", "tf.distribute, as in the predictor's train.py (see distribute.py)", choices=STRATEGIES)
    setting("verbose", "Keras fit verbosity")
    # Renamed in the flag clean-up (one name per meaning); the old names work for one more release.
    # The old --stride (training windows) now means the scoring stride, so it has no alias.
    for old, new in (("--sequence-length", "--seq-len"), ("--image-size", "--frame-size"), ("--score-stride", "--stride")):
        p.add_renamed(old, new)
    args = vars(p.parse_args(argv))
    args["counts"] = args["counts"] == "true"
    return TrainSettings(**args)


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


def pose_weights_file(weights: str | None) -> str | None:
    """The weights as the detector records them: a file that exists by its
    absolute path, so that a stream started from another folder finds it; a
    name that does not (yolov8n-pose.pt) as given, for Ultralytics to fetch."""
    return os.path.abspath(weights) if weights and os.path.isfile(weights) else weights


def train(cfg: TrainSettings):
    """Fits a detector on the normal clips of `cfg.videos`, calibrates its
    threshold on the held-out ones, saves it in `cfg.out`; returns its DetectorConfig."""
    from anomaly.video import expand_videos, read_video  # no Keras: bad flags and globs fail in a blink

    cfg.check()
    paths = expand_videos(cfg.videos)
    if cfg.density == "yolo-pose":
        from anomaly.features import load_pose_libraries

        load_pose_libraries()  # before TensorFlow
    import distribute
    from anomaly.detector import META, MODEL, Detector
    from anomaly.features import FeatureConfig, Normalizer, clip_features

    strategy = distribute.make_strategy(cfg.strategy)  # before any TensorFlow work
    out = distribute.chief_out(cfg.out, strategy)
    runio.check_replace(out, META, cfg.overwrite)  # before the fit, not after
    clips = [read_video(p, cfg.max_frames) for p in paths]
    tr_clips, va_clips = split_clips(clips, cfg.val_fraction)
    rng = np.random.default_rng(cfg.seed)
    tr_clips = tr_clips + [augment_clip(c, rng) for c in tr_clips for _ in range(cfg.augment)]
    fcfg = FeatureConfig(frame_size=cfg.frame_size,
                         density=DENSITIES[cfg.density],
                         mog2_learning_rate=cfg.mog2_learning_rate, mog2_warmup=cfg.mog2_warmup,
                         still_speed=cfg.still_speed, pose_weights=pose_weights_file(cfg.pose_weights))
    t0 = time.time()
    tr_feats = [clip_features(c, fcfg) for c in tr_clips]
    va_feats = [clip_features(c, fcfg) for c in va_clips]
    feat_s = time.time() - t0
    norm = Normalizer.fit(tr_feats)
    record = {"features": fcfg, "normalizer": {"mean": norm.mean, "std": norm.std}, "stride": cfg.stride,
              "train_stride": cfg.window_stride, "percentile": cfg.percentile, "score": cfg.score,
              "smooth": cfg.smooth, "border": cfg.border, "train_clips": len(tr_clips), "val_clips": len(va_clips),
              "videos": paths, "feature_seconds": round(feat_s, 1), "seed": cfg.seed,
              "replicas": strategy.num_replicas_in_sync}
    if cfg.objective != "fused":
        det, _ = fit_part(cfg, cfg.objective, strategy, tr_feats, va_feats, norm, record)
        with runio.output_set(out, (MODEL, META)) as stage:
            Detector.save(stage, det.models[0], det.configs[0])
        return det.configs[0]
    from anomaly.fusion import PARTS, FusedDetector, FusionConfig

    fits = {name: fit_part(cfg, name, strategy, tr_feats, va_feats, norm, record) for name in PARTS}
    parts = {name: det for name, (det, _) in fits.items()}
    fused = FusedDetector(parts, FusionConfig(list(PARTS), {n: 1.0 for n in PARTS}, 0.0,
                                              scale_percentile=cfg.scale_percentile))
    per_clip = [{name: scores[i] for name, (_, scores) in fits.items()} for i in range(len(va_feats))]
    fused.calibrate_scores(per_clip, cfg.percentile,
                           videos=paths[len(paths) - len(va_clips):] if len(paths) > 1 else None)
    with runio.output_set(out, (MODEL, META, *PARTS)) as stage:
        for name, det in parts.items():
            Detector.save(os.path.join(stage, name), det.models[0], det.configs[0])
        fused.save(stage)
    return fused.config


def fit_part(cfg: TrainSettings, objective: str, strategy, tr_feats, va_feats, norm, record: dict):
    """One detector of `objective` fitted on the training clips' raw features, its
    threshold the --percentile of its scores on the held-out ones: (the Detector,
    its (T,) frame scores of each held-out clip)."""
    from anomaly.cells import percentile_threshold, window_starts
    from anomaly.config import DetectorConfig
    from anomaly.detector import from_models

    part = PART_FITS[objective]
    w = part.window(cfg)
    n_tr, n_va = (sum(len(window_starts(len(f), w, cfg.window_stride)) for f in fs) for fs in (tr_feats, va_feats))
    if n_tr == 0 or n_va == 0:
        raise UserError(f"clips too short for windows of {w} frames (training windows {n_tr}, "
                        f"validation windows {n_va})")
    net, fitted = part.fit(cfg, strategy, tr_feats, va_feats, norm, record["features"].channels)
    det_cfg = DetectorConfig(objective=objective, window=w, threshold=0.0, **record, **fitted)
    det = from_models([net], [det_cfg])
    val_scores = [det.score_features(f) for f in va_feats]
    det_cfg.threshold = det.threshold = percentile_threshold(np.concatenate(val_scores), cfg.percentile)
    return det, val_scores


class AutoencoderFit:
    """How the "reconstruct" part is fitted: the ConvLSTM autoencoder of
    `anomaly.model` on normal windows of --seq-len frames (MSE)."""

    objective = "reconstruct"

    @staticmethod
    def window(cfg: TrainSettings) -> int:
        return cfg.seq_len

    @staticmethod
    def fit(cfg: TrainSettings, strategy, tr_feats, va_feats, norm, channels) -> tuple:
        """(model, its DetectorConfig fields)."""
        import keras

        import distribute
        from anomaly.cells import windows
        from anomaly.config import AE_PRESETS
        from anomaly.model import build_autoencoder, fit_callbacks

        xtr, xva = (np.concatenate([norm(windows(f, cfg.seq_len, cfg.window_stride)) for f in fs])
                    for fs in (tr_feats, va_feats))
        ae_cfg = dataclasses.replace(AE_PRESETS[cfg.preset], window=cfg.seq_len, frame_size=cfg.frame_size,
                                     channels=channels)
        keras.utils.set_random_seed(cfg.seed)
        with strategy.scope():
            ae = build_autoencoder(ae_cfg)
            ae.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss="mse")
        t0 = time.time()
        batch = distribute.global_batch(strategy, cfg.batch_size)
        hist = ae.fit(xtr, xtr, validation_data=(xva, xva), epochs=cfg.epochs, batch_size=batch,
                      callbacks=fit_callbacks(cfg.patience, tensorboard_callback(cfg)), verbose=cfg.verbose,
                      shuffle=True)
        return ae, {"autoencoder": ae_cfg, "preset": cfg.preset, "fit_seconds": round(time.time() - t0, 1),
                    "global_batch": batch, **_losses(hist)}


class MotionFit:
    """How the "motion" part is fitted: the motion model of `anomaly.motion` on
    normal frames (a frame and the one before), the per-location counts of those
    frames, and the parts' scales on the held-out clips. A batch holds 4x
    --batch-size frames per replica (a frame is a quarter of an autoencoder
    window's work)."""

    objective = "motion"

    @staticmethod
    def window(cfg: TrainSettings) -> int:
        return 2

    @staticmethod
    def fit(cfg: TrainSettings, strategy, tr_feats, va_feats, norm, channels) -> tuple:
        """(model, its DetectorConfig fields); `channels` is fixed by the features."""
        import keras

        import distribute
        from anomaly import motion
        from anomaly.config import MotionConfig

        keras.utils.set_random_seed(cfg.seed)
        t0 = time.time()
        batch = 4 * distribute.global_batch(strategy, cfg.batch_size)
        with strategy.scope():
            net, m_cfg, hist = motion.fit(tr_feats, va_feats, norm,
                                          MotionConfig(frame_size=cfg.frame_size, border=cfg.border),
                                          lr=cfg.lr, epochs=cfg.epochs, batch_size=batch, patience=cfg.patience,
                                          verbose=cfg.verbose, callbacks=tensorboard_callback(cfg))
        fit_s = round(time.time() - t0, 1)
        counts = motion.fit_counts(tr_feats, m_cfg) if cfg.counts else None
        return net, {"motion": m_cfg, "location_counts": None if counts is None else counts.tolist(),
                     "scale_percentile": cfg.scale_percentile,
                     "scales": motion.calibrate_scales(net, m_cfg, norm, va_feats, cfg.scale_percentile, counts),
                     "fit_seconds": fit_s, "global_batch": batch, **_losses(hist)}


PART_FITS = {f.objective: f for f in (AutoencoderFit, MotionFit)}


def tensorboard_callback(cfg: TrainSettings) -> list:
    import keras

    return [keras.callbacks.TensorBoard(cfg.tensorboard)] if cfg.tensorboard else []


def _losses(hist) -> dict:
    best = int(np.argmin(hist.history["val_loss"]))
    return {"train_loss": float(hist.history["loss"][best]), "val_loss": float(hist.history["val_loss"][best]),
            "epoch": best + 1, "epochs_run": len(hist.history["loss"])}


def main(argv=None) -> int:
    cfg = parse_args(argv)

    def run():
        det = train(cfg)
        fit = "" if cfg.objective == "fused" else f", val_loss {det.val_loss:.4f} at epoch {det.epoch}"
        print(f"saved {cfg.out}: threshold {det.threshold:.4f} ({det.percentile:g}th percentile of "
              f"held-out normal scores){fit}")
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
