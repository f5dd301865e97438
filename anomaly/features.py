"""Per-frame motion features: optical flow x, y and a person-density heatmap.

A `FeatureExtractor` is stateful (previous frame, background model): one per
video stream. Features are (S, S, 3) float32: flow x and flow y in pixels per
frame at the working size S, and density in [0, 1] (a fourth channel, standing
density, with `FeatureConfig.still_speed`). `Normalizer` scales them with
statistics fitted on the training clips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cli import InputError


@dataclass
class FeatureConfig:
    """frame_size: working size S; flow: "farneback" (OpenCV's dense flow; DIS
    flow scored below it on the real-footage validation clips and was removed,
    anomaly/README.md); density: "mog2"
    (background subtraction), "hog" (OpenCV's HOG people detector's boxes) or
    "keypoints" (a detector adapter: YOLO-pose unless one is given); blur: Gaussian
    sigma of the density heatmap in pixels at size S; mog2_history and
    mog2_learning_rate: MOG2's background model (learning rate -1: OpenCV's
    1 / history, which absorbs a person who stands still within a few dozen
    frames; 0.001 keeps about half of a standing crowd in the foreground 95
    frames later); mog2_warmup: the first N frames of a stream build the
    background at the rate 1 / (t + 1) (the mean of the frames so far) before
    mog2_learning_rate takes over: with a slow rate and no warm-up, whoever
    stands somewhere in a stream's first frame leaves a "ghost" there, a
    foreground blob where nobody is, for hundreds of frames (0 = off, as in
    detectors trained before it existed); still_speed: with a value > 0, a fourth channel, the density
    of people who do not move, density * exp(-|flow| / still_speed) (flow in
    pixels per frame at size S): near zero where people walk, large where a
    crowd stands (0 = off); pose_weights: the YOLO-pose weights file of the
    keypoints density (None: Ultralytics' yolov8n-pose.pt), recorded so that a
    stream rebuilds the features the detector was trained on."""

    frame_size: int = 64
    flow: str = "farneback"
    density: str = "mog2"
    blur: float = 2.0
    mog2_history: int = 100
    mog2_learning_rate: float = -1.0
    mog2_warmup: int = 0
    still_speed: float = 0.0
    pose_weights: str | None = None

    def __post_init__(self):
        if self.flow == "dis":  # a detector folder saved before DIS was removed
            raise InputError("this detector uses DIS optical flow, which was removed (it scored below Farneback "
                             "on real footage); retrain it with python -m anomaly.train")
        if self.flow != "farneback":
            raise InputError(f"flow must be farneback, got {self.flow!r}")
        if self.pose_weights is not None and self.density != "keypoints":
            raise InputError(f"pose_weights {self.pose_weights!r} applies to the keypoints density only, "
                             f"not {self.density!r}")

    @property
    def channels(self) -> int:
        """Feature channels: flow x, flow y, density (and standing density)."""
        return 4 if self.still_speed > 0 else 3

    def to_dict(self):
        return {k: v for k, v in asdict(self).items() if v is not None}


def _gray(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    f = np.asarray(frame)
    if f.ndim == 3 and f.shape[-1] == 3:
        f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    elif f.ndim == 3 and f.shape[-1] == 1:
        f = f[..., 0]
    elif f.ndim != 2:
        raise InputError(f"a frame must be (H, W) or (H, W, 3), got shape {f.shape}")
    if f.dtype != np.uint8:
        f = np.clip(np.rint(np.asarray(f, np.float32) * (255.0 if f.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    if f.shape != (size, size):
        f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
    return f


class Mog2Density:
    """Foreground density from MOG2 background subtraction, blurred: moving people
    light up whatever their number or size; no model weights needed."""

    def __init__(self, cfg: FeatureConfig):
        import cv2

        self.cfg = cfg
        self.bg = cv2.createBackgroundSubtractorMOG2(history=cfg.mog2_history, detectShadows=False)
        self.t = 0

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        import cv2

        rate = 1.0 / (self.t + 1) if self.t < self.cfg.mog2_warmup else self.cfg.mog2_learning_rate
        self.t += 1
        fg = (self.bg.apply(gray, learningRate=rate) > 0).astype(np.float32)
        return cv2.GaussianBlur(fg, (0, 0), self.cfg.blur)


class KeypointDensity:
    """Adapter: a person/pose detector's keypoints or boxes -> a density heatmap.

    Args:
        detector: callable(frame uint8 RGB (H, W, 3)) -> array (K, 2) of (x, y)
            keypoints, or (B, 4) boxes (x1, y1, x2, y2), in the frame's pixels.
        cfg: the feature config (heatmap size and blur).
    """

    def __init__(self, detector, cfg: FeatureConfig):
        self.detector, self.cfg = detector, cfg

    def heatmap(self, points: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        import cv2

        s = self.cfg.frame_size
        out = np.zeros((s, s), np.float32)
        pts = np.asarray(points, np.float32).reshape(-1, np.asarray(points).shape[-1] if len(points) else 2)
        if len(pts) == 0:
            return out
        if pts.shape[1] == 4:  # boxes -> centres
            pts = np.stack([(pts[:, 0] + pts[:, 2]) / 2, (pts[:, 1] + pts[:, 3]) / 2], axis=1)
        h, w = frame_hw
        cols = np.clip((pts[:, 0] * s / w).astype(int), 0, s - 1)
        rows = np.clip((pts[:, 1] * s / h).astype(int), 0, s - 1)
        np.add.at(out, (rows, cols), 1.0)
        out = cv2.GaussianBlur(out, (0, 0), self.cfg.blur)
        return out * (2 * np.pi * self.cfg.blur**2)  # one isolated point peaks at ~1

    def __call__(self, gray: np.ndarray, frame: np.ndarray) -> np.ndarray:
        return self.heatmap(self.detector(frame), frame.shape[:2])


def load_pose_libraries() -> None:
    """Loads Ultralytics and the torchvision it runs on, if installed, before
    TensorFlow loads: with TensorFlow loaded first, importing torchvision's
    operators crashed the process (a segmentation fault; torch 2.14.1,
    torchvision 0.29.1, TensorFlow 2.21, Linux), and the other order ran.
    Entry points call it when the features are YOLO-pose's, before Keras."""
    try:
        import torchvision  # noqa: F401
        import ultralytics  # noqa: F401
    except ImportError:  # YoloPoseDetector says what is missing
        pass


class YoloPoseDetector:
    """Keypoints from Ultralytics YOLO-pose, when the user has installed it and has
    its weights (never a dependency of this project). Frames are searched at
    `imgsz` pixels on their long side: people 40 pixels tall, as in the real
    clips (384x288), are mostly missed at Ultralytics' default of 640
    (yolo11n-pose found 0.60 people a frame there, 4.12 at 1280, where HOG
    finds 3.68; anomaly/README.md, Options)."""

    imgsz = 1280

    def __init__(self, weights: str | None = None, conf: float = 0.25):
        weights = weights or "yolov8n-pose.pt"
        try:
            from ultralytics import YOLO
        except ImportError:
            raise InputError("--density yolo-pose needs Ultralytics (pip install ultralytics) and YOLO-pose "
                             "weights; or use --density mog2") from None
        try:
            self.model = YOLO(weights)
        except (OSError, ConnectionError, FileNotFoundError) as e:
            raise InputError(f"--density yolo-pose: the weights {weights} could not be loaded or downloaded ({e}); "
                             "put the file in the working folder, or use --density mog2") from None
        self.conf = conf

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        res = self.model(frame, conf=self.conf, imgsz=self.imgsz, verbose=False)[0]
        if res.keypoints is None:
            return np.zeros((0, 2), np.float32)
        return res.keypoints.xy.cpu().numpy().reshape(-1, 2)


class HogPeopleDetector:
    """Person boxes from OpenCV's HOG people detector (HOG features and a linear
    SVM, Dalal & Triggs 2005), built into OpenCV 4: nothing to download. OpenCV 5
    moved it out of its main modules, hence the version check. Boxes (B, 4) as
    (x1, y1, x2, y2) in the frame's pixels. People smaller than its 64x128 window
    are not found, so frames are searched at `height` pixels high (the real
    clips, 288 high: 0.58 people found a frame as they are, 3.68 at 576)."""

    height = 576

    def __init__(self):
        import cv2

        if not hasattr(cv2, "HOGDescriptor"):
            raise InputError(f"--density hog needs OpenCV's HOGDescriptor, which OpenCV {cv2.__version__} does not "
                             "have in its main modules; pip install 'opencv-python-headless<5', or use --density mog2")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        k = self.height / frame.shape[0]
        big = cv2.resize(frame, (round(frame.shape[1] * k), self.height)) if k != 1 else frame
        boxes, _ = self.hog.detectMultiScale(np.ascontiguousarray(big), winStride=(8, 8), padding=(8, 8), scale=1.05)
        b = np.asarray(boxes, np.float32).reshape(-1, 4) / k  # (x, y, w, h) in the frame's pixels
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


class FeatureExtractor:
    """Stateful per-stream features: call on each frame in order."""

    def __init__(self, cfg: FeatureConfig | None = None, detector=None):
        self.cfg = cfg or FeatureConfig()
        if self.cfg.density == "mog2":
            self.density = Mog2Density(self.cfg)
        elif self.cfg.density == "keypoints":
            self.density = KeypointDensity(detector or YoloPoseDetector(self.cfg.pose_weights), self.cfg)
        elif self.cfg.density == "hog":
            self.density = KeypointDensity(detector or HogPeopleDetector(), self.cfg)
        else:
            raise InputError(f"density must be mog2, hog or keypoints, got {self.cfg.density!r}")
        self.prev = None

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Dense flow from gray a to gray b: (S, S, 2) (x right, y down), pixels/frame."""
        import cv2

        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        s = self.cfg.frame_size
        gray = _gray(frame, s)
        fl = np.zeros((s, s, 2), np.float32) if self.prev is None else self.flow(self.prev, gray)
        self.prev = gray
        if isinstance(self.density, KeypointDensity):
            dens = self.density(gray, np.asarray(frame))
        else:
            dens = self.density(gray)
        return stack_features(fl, dens, self.cfg)


def stack_features(flow: np.ndarray, density: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """One frame's features from its flow (S, S, 2) and density (S, S): (S, S, C),
    C = `cfg.channels` (the standing-density channel computed here, in one place
    for the extractor and for precomputed features)."""
    flow = np.asarray(flow, np.float32)
    density = np.asarray(density, np.float32)
    chans = [flow, density[..., None]]
    if cfg.still_speed > 0:
        speed = np.hypot(flow[..., 0], flow[..., 1])
        chans.append((density * np.exp(-speed / cfg.still_speed))[..., None])
    return np.concatenate(chans, axis=-1).astype(np.float32)


def clip_features(frames, cfg: FeatureConfig | None = None, detector=None) -> np.ndarray:
    """(T, H, W[, 3]) frames -> (T, S, S, C) raw features (a fresh extractor; C = cfg.channels)."""
    ex = FeatureExtractor(cfg, detector)
    return np.stack([ex(f) for f in frames])


@dataclass
class Normalizer:
    """Per-channel (x - mean) / std, fitted on training features."""

    mean: list
    std: list

    @classmethod
    def fit(cls, feats: list) -> "Normalizer":
        allf = np.concatenate([f.reshape(-1, f.shape[-1]) for f in feats]).astype(np.float64)
        return cls(allf.mean(axis=0).tolist(), np.maximum(allf.std(axis=0), 1e-6).tolist())

    def __call__(self, f: np.ndarray) -> np.ndarray:
        return ((f - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)
