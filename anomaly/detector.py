"""The one-network detectors (the parts of the default fused detector,
`anomaly.fusion`): window scoring, streaming API, save/load, ensembles.

`Detector` holds what every part shares (features, normalisers, window and
stride, frame reduction, border, smoothing, threshold, streaming); its two kinds
differ only in the network and how a window becomes a score:

`ReconstructionDetector` (objective "reconstruct"): a frame's score = squared
reconstruction error of its normalised features
(flow x, flow y, density) inside a window of `window` frames, reduced over the
frame either as the mean over all pixels ("mean") or as the largest mean over
square cells of S/8 pixels ("local", an 8x8 grid on the whole frame: a small
region moving wrongly, such as one runner, is not diluted by the rest of the
frame). Both can leave out a `border` of pixels at each edge (people entering
and leaving, and optical flow at the image edge, are the least predictable
pixels of a normal clip). The window is scored every `stride` frames; in
streaming, frames in between get the latest score, and frames before the first
full window get none. Finally the
frame score is the maximum of those scores over the last `smooth` frames
(causal: a burst of abnormal motion keeps the alarm up for `smooth` frames
instead of flickering with each window; `smooth` 1 turns it off).
`MotionDetector` (objective "motion") scores each frame with the motion model of
`anomaly.motion` instead (window 2: a frame and the one before, for its flow).
A saved folder's detector.json names its kind (`objective`); `Detector.load`
and `from_models` build that kind.
"""

from __future__ import annotations

import os

import numpy as np

import runio
from anomaly.cells import causal_max, reduce_error_map, scaled_max, window_starts, windows
from anomaly.config import DetectorConfig, check_border
from anomaly.features import FeatureExtractor, Normalizer, stack_features
from cli import InputError

META = "detector.json"
MODEL = "ae.keras"


class Detector:
    """What every kind of one-network detector shares: one network, or several
    averaged (an ensemble), plus what scoring needs. Build one with `from_models`
    or `Detector.load`; the kinds below define `network_input` and `window_errors`.

    Args:
        models: keras networks of this kind.
        configs: one `DetectorConfig` (or its dict) per model; their objective
            (this kind's), features and window must agree.
        detector: a person detector for the keypoints density (see features).
    """

    objective = None  # the kind's name in detector.json
    label = None  # the kind's name in tables

    def __init__(self, models, configs, detector=None):
        self.models = list(models)
        self.configs = [c if isinstance(c, DetectorConfig) else DetectorConfig.from_dict(c) for c in configs]
        c0 = self.configs[0]
        for c in self.configs:
            if c.features != c0.features or c.window != c0.window or c.objective != self.objective:
                raise InputError(f"ensemble members must share their objective ({self.objective}), "
                                 f"features and window")
        self.feature_cfg = c0.features
        self.normalizers = [Normalizer(**c.normalizer) for c in self.configs]
        self.window = c0.window
        self.stride = c0.stride
        self.threshold = float(np.mean([c.threshold for c in self.configs]))
        self.score = c0.score
        self.smooth = c0.smooth
        self.border = c0.border
        self._detector = detector
        self._fns = {}
        self.reset()

    @staticmethod
    def network_input(cfg: DetectorConfig) -> tuple:
        """The input shape (batch left out) of the network `cfg` describes."""
        raise NotImplementedError

    def window_errors(self, raw_windows: np.ndarray) -> np.ndarray:
        """(K, W, S, S, C) raw features -> (K, W) per-frame errors, ensemble mean
        (NaN where a frame of the window gets none)."""
        raise NotImplementedError

    def set_border(self, border: int) -> None:
        """Scores leave out `border` pixels at each edge from now on."""
        check_border(border, self.feature_cfg.frame_size, "--border")
        self.border = border

    def rescale(self, feats: list, percentile: float | None = None) -> DetectorConfig:
        """Re-fits the scales the kind's score is made of on normal clips' raw
        features [(T, S, S, C)], at `percentile` of each part's values (default:
        the saved one); returns the first member's config with them. The
        autoencoder's score has none: its config itself comes back, the same
        object (`anomaly.calibrate.held_out_flagged` then scores it only once)."""
        return self.configs[0]

    # ------------------------------------------------------------ persistence
    @staticmethod
    def load(paths, detector=None) -> "Detector":
        """A saved detector folder, or a list of folders (an ensemble), as the
        kind its detector.json names."""
        paths = [paths] if isinstance(paths, str) else list(paths)
        files = [(os.path.join(p, MODEL), os.path.join(p, META)) for p in paths]
        for p, (mp, jp) in zip(paths, files):  # before Keras loads: a wrong folder fails in a blink
            if not (os.path.isfile(mp) and os.path.isfile(jp)):
                raise InputError(f"{p}: not a detector folder (needs {MODEL} and {META}; "
                                 "train one with python -m anomaly.train)")
        configs = [DetectorConfig.load(jp) for _, jp in files]
        if any(c.features.density == "keypoints" for c in configs):
            from anomaly.features import load_pose_libraries

            load_pose_libraries()  # before TensorFlow
        import anomaly.model  # noqa: F401  (registers CoordChannels)
        import model  # (also registers the shared layers)

        models = []
        for (mp, _), cfg in zip(files, configs):
            net = model.load_model_file(mp)
            expected = KINDS[cfg.objective].network_input(cfg)
            try:
                got = tuple(net.input_shape)[1:]
            except (AttributeError, ValueError, TypeError):
                got = None
            if got != expected:
                raise InputError(f"{mp}: not this detector's network (input {got}, detector.json says {expected})")
            models.append(net)
        return from_models(models, configs, detector)

    @staticmethod
    def save(folder: str, net, config) -> None:
        """Writes `net` (MODEL) and its config (META, a DetectorConfig or its dict) into `folder`."""
        cfg = config if isinstance(config, DetectorConfig) else DetectorConfig.from_dict(config)
        os.makedirs(folder, exist_ok=True)
        runio.save_network(net, os.path.join(folder, MODEL))
        cfg.save(os.path.join(folder, META))

    # --------------------------------------------------------------- scoring
    def _predict(self, i, x):
        """Model i on the batch x (NumPy out). One window at a time, as a stream
        calls it, is bound by the latency of the recurrent steps, and XLA's fused
        steps run it about 1.5x faster on 2 cores (anomaly/README.md, Speed); a
        batch is bound by throughput, where XLA was slower (0.94x) and would
        recompile for each batch size, so batches run as a plain graph."""
        one = len(x) == 1
        if (i, one) not in self._fns:
            import tensorflow as tf

            m = self.models[i]
            self._fns[i, one] = tf.function(lambda v: m(v, training=False), jit_compile=one,
                                            reduce_retracing=not one)
        y = self._fns[i, one](x)
        if isinstance(y, dict):
            return {k: np.asarray(v, np.float32) for k, v in y.items()}
        return np.asarray(y, np.float32)

    def score_features(self, raw: np.ndarray) -> np.ndarray:
        """Frame scores of a whole clip's raw features (T, S, S, C), exactly as the
        stream would give them; NaN before the first full window."""
        starts = window_starts(len(raw), self.window, self.stride)
        if not starts:
            return np.full(len(raw), np.nan)
        return self.hold(len(raw), starts, self.window_errors(windows(raw, self.window, self.stride))[:, -1])

    def hold(self, t: int, starts: list, values: np.ndarray) -> np.ndarray:
        """One value per scored window (K,) -> (T,) frame scores: each window's
        value from its last frame until the next window's last frame, then the
        causal max over `smooth` frames; NaN before the first window."""
        scores = np.full(t, np.nan)
        for k, s in enumerate(starts):
            end = s + self.window - 1
            nxt = starts[k + 1] + self.window - 1 if k + 1 < len(starts) else t
            scores[end:nxt] = values[k]
        return causal_max(scores, self.smooth)

    def named_scores(self, raw: np.ndarray) -> dict:
        """{name: (T,) scores} of the named parts whose frame-by-frame maximum is
        this detector's score (`score_features`), each in the score's units and
        smoothed as it is, so the largest names the part that raised a frame.
        One part, the score itself, unless a kind's score is the max of several."""
        return {self.objective: self.score_features(raw)}

    def score_frames(self, frames) -> np.ndarray:
        """Frame scores of a whole clip of frames (see `score_features`)."""
        return self.score_features(self.features(frames))

    def features(self, frames) -> np.ndarray:
        """Raw features of a clip with a fresh extractor: (T, S, S, C)."""
        ex = FeatureExtractor(self.feature_cfg, self._detector)
        return np.stack([ex(f) for f in frames])

    # -------------------------------------------------------------- streaming
    def warm_up(self) -> None:
        """Scores one blank window of the stream's shape, so that the networks'
        one-window call is traced (and compiled by XLA) before a source opens
        rather than at its first full window: a stall of ~3 s on 2 cores that a
        live camera would have to buffer. The stream's state is not touched;
        once compiled, a second call does nothing."""
        if all((i, True) in self._fns for i in range(len(self.models))):
            return
        s = self.feature_cfg.frame_size
        f = stack_features(np.zeros((s, s, 2), np.float32), np.zeros((s, s), np.float32), self.feature_cfg)
        self.window_errors(np.zeros((1, self.window, *f.shape), np.float32))

    def reset(self):
        """Starts a new stream."""
        self._extractor = None
        self._buf = []
        self._count = 0
        self._last = None
        self._recent = []

    def add_features(self, flow: np.ndarray, heatmap: np.ndarray):
        """Precomputed features of the next frame: flow (S, S, 2), heatmap (S, S).
        Returns None until a window is full, then (is_anomaly, error)."""
        return self.finish(self.score_pending(self.push(flow, heatmap)))

    def add_frame(self, frame: np.ndarray):
        """The next video frame (H, W, 3) uint8 RGB or (H, W) gray. Returns None
        until a window is full, then (is_anomaly, error)."""
        return self.add_features(*self.frame_features(frame))

    # A streamed frame in three steps, so that `anomaly.streaming` can run the
    # networks of several frames at once: push and finish in stream order on one
    # thread, score_pending (the networks) on any.
    def frame_features(self, frame: np.ndarray) -> tuple:
        """The next video frame -> its (flow (S, S, 2), heatmap (S, S)), from this stream's extractor."""
        if self._extractor is None:
            self._extractor = FeatureExtractor(self.feature_cfg, self._detector)
        f = self._extractor(frame)
        return f[..., :2], f[..., 2]

    def push(self, flow: np.ndarray, heatmap: np.ndarray) -> tuple:
        """Buffers the next frame's features. Returns (full, window): whether a
        window is full, and the window to score, (1, W, S, S, C) raw features, or
        None where none is due (before the first, and between strides)."""
        s = self.feature_cfg.frame_size
        flow, heatmap = np.asarray(flow, np.float32), np.asarray(heatmap, np.float32)
        if flow.shape != (s, s, 2) or heatmap.shape != (s, s):
            raise ValueError(f"flow must be ({s}, {s}, 2) and heatmap ({s}, {s}); "
                             f"got {flow.shape} and {heatmap.shape}")
        self._buf = (self._buf + [stack_features(flow, heatmap, self.feature_cfg)])[-self.window:]
        self._count += 1
        full = self._count >= self.window
        due = full and (self._count - self.window) % self.stride == 0
        return full, np.stack(self._buf)[None] if due else None

    def score_pending(self, pending: tuple) -> tuple:
        """push's (full, window) -> (full, the window's last-frame error, or None
        where no window was due). Reads no stream state: any thread may run it."""
        full, window = pending
        return full, None if window is None else float(self.window_errors(window)[0, -1])

    def finish(self, scored: tuple):
        """In stream order: score_pending's (full, error) -> None before the first
        window, else (is_anomaly, score): the latest window's error, max over the
        last `smooth` frames."""
        full, err = scored
        if not full:
            return None
        if err is not None:
            self._last = err
        self._recent = (self._recent + [self._last])[-max(1, self.smooth):]
        score = max(self._recent)
        return score > self.threshold, score


class ReconstructionDetector(Detector):
    """The ConvLSTM autoencoder (`anomaly.model`): a window's frames are scored
    by their squared reconstruction error, reduced over the frame (`score`,
    `border`; `anomaly.cells.reduce_error_map`)."""

    objective = "reconstruct"
    label = "ConvLSTM AE"

    @staticmethod
    def network_input(cfg: DetectorConfig) -> tuple:
        s = cfg.features.frame_size
        return (None, s, s, cfg.features.channels)

    def window_errors(self, raw_windows: np.ndarray, batch: int = 16) -> np.ndarray:
        out = np.zeros(raw_windows.shape[:2], np.float64)
        for i, norm in enumerate(self.normalizers):
            x = norm(raw_windows)
            for j in range(0, len(x), batch):
                r = self._predict(i, x[j:j + batch])
                err = np.mean((r - x[j:j + batch]) ** 2, axis=-1)  # (k, W, S, S)
                out[j:j + batch] += reduce_error_map(err, self.score, self.border)
        return out / len(self.normalizers)


class MotionDetector(Detector):
    """The motion model (`anomaly.motion`): from a frame's density it predicts
    the flow expected there, and the frame's score fuses its parts (flow error,
    speed, and where fitted the per-location direction counts), each in units of
    its scale. Its cells and border are fixed when it is trained."""

    objective = "motion"
    label = "motion model"

    def __init__(self, models, configs, detector=None):
        super().__init__(models, configs, detector)
        self.motion_cfgs = [c.motion for c in self.configs]
        self.scales = [c.scales for c in self.configs]
        self.counts = [None if c.location_counts is None else np.asarray(c.location_counts)
                       for c in self.configs]

    @staticmethod
    def network_input(cfg: DetectorConfig) -> tuple:
        s = cfg.features.frame_size
        return (s, s, 1)

    PARTS = ("surprise", "pace", "counts")  # the columns of `anomaly.motion.frame_parts`

    def motion_scores(self, raw: np.ndarray) -> np.ndarray:
        """(T, S, S, C) raw features -> (T,) fused motion-model scores (ensemble
        mean), before smoothing. Each frame's flow is the one from the frame before."""
        return np.mean([scaled_max(self.model_parts(raw, i), self.scales[i][self.score])
                        for i in range(len(self.models))], axis=0)

    def model_parts(self, raw: np.ndarray, i: int = 0, batch: int = 64) -> np.ndarray:
        """(T, S, S, C) raw features -> (T, k) model i's parts of each frame's
        score before their scales: surprise, pace and, with counts, counts."""
        from anomaly.motion import DENSITY, frame_parts

        x = self.normalizers[i](raw)[..., DENSITY:DENSITY + 1]
        parts = [frame_parts(self._predict(i, x[j:j + batch]), raw[j:j + batch], self.motion_cfgs[i], self.score,
                             self.counts[i]) for j in range(0, len(x), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.scales[i][self.score])))

    def named_scores(self, raw: np.ndarray) -> dict:
        """{surprise, pace (, counts): (T,) scores}, each part over its scale and
        smoothed as the score is; an ensemble's score (the mean of its members'
        maxima) is not the max of parts, so it stays one part."""
        starts = window_starts(len(raw), self.window, self.stride)
        if len(self.models) > 1 or not starts:
            return super().named_scores(raw)
        parts = self.model_parts(raw[np.asarray(starts) + self.window - 1])  # the windows' last frames
        parts = np.asarray(parts, np.float64) / np.asarray(self.scales[0][self.score], np.float64)
        return {name: self.hold(len(raw), starts, parts[:, k]) for k, name in enumerate(self.PARTS[:parts.shape[1]])}

    def window_errors(self, raw_windows: np.ndarray) -> np.ndarray:
        """Only the last frame of each window is scored (NaN before it)."""
        out = np.full(raw_windows.shape[:2], np.nan)
        out[:, -1] = self.motion_scores(raw_windows[:, -1])
        return out

    def set_border(self, border: int) -> None:
        if border != self.motion_cfgs[0].border:
            raise InputError(f"--border {border}: a motion detector's cells are fixed when it is trained "
                             f"(border {self.motion_cfgs[0].border})")
        super().set_border(border)

    def rescale(self, feats: list, percentile: float | None = None) -> DetectorConfig:
        import dataclasses

        from anomaly.motion import calibrate_scales

        cfg = self.configs[0]
        pct = percentile if percentile is not None else (cfg.scale_percentile or 95.0)
        scales = calibrate_scales(self.models[0], cfg.motion, self.normalizers[0], feats, pct, self.counts[0])
        self.scales = [scales]
        return dataclasses.replace(cfg, scales=scales, scale_percentile=pct)


KINDS = {k.objective: k for k in (ReconstructionDetector, MotionDetector)}


def from_models(models, configs, detector=None) -> Detector:
    """The detector of the kind its configs name (`DetectorConfig.objective`);
    arguments as `Detector`'s."""
    configs = [c if isinstance(c, DetectorConfig) else DetectorConfig.from_dict(c) for c in configs]
    return KINDS[configs[0].objective](models, configs, detector)


def apply_overrides(det, args):
    """The command line's --threshold, --stride, --smooth, --score and --border
    (those it has and were given) replace the detector's saved settings; returns `det`."""
    for flag in ("stride", "smooth"):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 1:
                raise InputError(f"--{flag} must be >= 1, got {value}")
            setattr(det, flag, value)
    if getattr(args, "score", None) is not None:
        det.score = args.score
    border = getattr(args, "border", None)
    if border is not None:
        det.set_border(border)
    if getattr(args, "threshold", None) is not None:
        det.threshold = args.threshold
    return det
