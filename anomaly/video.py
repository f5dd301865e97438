"""Reading and writing video files (OpenCV), with one clear error for bad input."""

from __future__ import annotations

import glob
import os

import numpy as np

from cli import InputError


class VideoError(InputError):
    """A video that cannot be used; the message names the file and the problem."""


def read_video(path: str, max_frames: int | None = None) -> np.ndarray:
    """All frames of a video (or GIF) as uint8 RGB (T, H, W, 3)."""
    import cv2

    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such video file")
    cap = cv2.VideoCapture(path)
    frames = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, fr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise VideoError(f"{path}: no frames could be decoded (corrupt, empty or unsupported video)")
    return np.stack(frames)


def video_fps(path: str, default: float = 25.0) -> float:
    """The frame rate a video file declares (`default` when it declares none)."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else default


def is_live(source: str) -> bool:
    """A camera index ("0") or a stream URL (rtsp://, http://, ...), not a file."""
    return source.isdigit() or "://" in source


def check_source(source: str) -> None:
    """A VideoError unless `source` is live or an existing file (checked before
    any slow work, such as compiling a detector, and again when it opens)."""
    if not is_live(source) and not os.path.isfile(source):
        raise VideoError(f"{source}: no such video file (or a camera index such as 0, or a stream URL)")


def open_source(source: str, timeout_s: float = 10.0):
    """An OpenCV capture of a file, a camera index ("0") or a stream URL; a live
    source that sends nothing for `timeout_s` seconds ends (instead of hanging)."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # not a WARN line per stall
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
    elif "://" in source:
        ms = int(timeout_s * 1000)
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    else:
        check_source(source)
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        if is_live(source):
            raise VideoError(f"{source}: cannot open it (no such camera, stream unreachable, or unsupported)")
        raise VideoError(f"{source}: no frames could be decoded (corrupt, empty or unsupported video)")
    return cap


def iter_video(source: str, timeout_s: float = 10.0):
    """Frames one at a time as they arrive (uint8 RGB (H, W, 3)), from a file, a
    camera index or a stream URL (`open_source`), until the source ends, drops
    or stalls for `timeout_s` seconds."""
    cap = open_source(source, timeout_s)  # now, so a source that cannot be opened fails before any output
    return _frames(cap, source)


def _frames(cap, source: str):
    import cv2

    n = 0
    try:
        while True:
            ok, fr = cap.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(fr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{source}: no frames could be decoded (corrupt, empty, unsupported or silent source)")


class VideoWriter:
    """Frames written one at a time into an MP4 (mp4v) or AVI (MJPG) file: to a
    temporary file, renamed to `path` on `close()` (so a finished file is never
    half-written); the size is the first frame's."""

    def __init__(self, path: str, fps: float = 25.0):
        ext = os.path.splitext(path)[1].lower()
        self.fourcc = {".mp4": "mp4v", ".avi": "MJPG"}.get(ext)
        if self.fourcc is None:
            raise VideoError(f"{path}: write .mp4 or .avi")
        self.path, self.fps, self.tmp, self.writer = path, fps, f"{path}.tmp{os.getpid()}{ext}", None

    def write(self, frame: np.ndarray) -> None:
        """One uint8 RGB (H, W, 3) frame."""
        import cv2

        f = np.asarray(frame)
        if f.ndim != 3 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise VideoError(f"frames must be uint8 (H, W, 3), got {f.dtype} {f.shape}")
        if self.writer is None:
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                          (f.shape[1], f.shape[0]))
            if not self.writer.isOpened():
                raise VideoError(f"{self.path}: cannot open a video writer")
        self.writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))

    def close(self) -> str:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)
        return self.path


def write_video(path: str, frames: np.ndarray, fps: float = 25.0) -> str:
    """uint8 RGB (T, H, W, 3) -> an MP4 (mp4v) or AVI (MJPG) file, written then renamed."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    writer = VideoWriter(path, fps)
    for f in frames:
        writer.write(f)
    return writer.close()


def expand_videos(pattern: str, flag: str = "--videos") -> list[str]:
    """Video paths matching a glob (sorted); an empty match is an error naming `flag`."""
    paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not paths:
        raise VideoError(f"{flag} {pattern!r} matches no file")
    return paths


def write_labels(path: str, labels: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("\n".join(str(int(v)) for v in labels) + "\n")


def read_labels(path: str) -> np.ndarray:
    """One 0/1 per line (NAME.labels.txt)."""
    with open(path) as f:
        vals = [line.strip() for line in f if line.strip()]
    try:
        arr = np.array([int(v) for v in vals], np.uint8)
    except ValueError:
        raise VideoError(f"{path}: labels must be one 0 or 1 per line") from None
    if arr.size == 0 or arr.max() > 1:
        raise VideoError(f"{path}: labels must be one 0 or 1 per line")
    return arr


def labels_for(video: str, frames: int, labels_dir: str | None = None) -> np.ndarray:
    """The per-frame labels of `video`: LABELS_DIR/NAME.labels.txt (default:
    beside the video), checked to have one label per frame."""
    stem = os.path.splitext(os.path.basename(video))[0]
    path = os.path.join(labels_dir or os.path.dirname(video), stem + ".labels.txt")
    if not os.path.isfile(path):
        raise VideoError(f"{video}: no labels file {path} (one 0/1 per frame)")
    labels = read_labels(path)
    if len(labels) != frames:
        raise VideoError(f"{path}: {len(labels)} labels for {frames} frames")
    return labels
