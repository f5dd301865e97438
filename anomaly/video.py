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


def iter_video(path: str):
    """Frames of a video one at a time (uint8 RGB (H, W, 3)), for streaming."""
    import cv2

    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such video file")
    cap = cv2.VideoCapture(path)
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
        raise VideoError(f"{path}: no frames could be decoded (corrupt, empty or unsupported video)")


def write_video(path: str, frames: np.ndarray, fps: float = 25.0) -> str:
    """uint8 RGB (T, H, W, 3) -> an MP4 (mp4v) or AVI (MJPG) file, written then renamed."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    ext = os.path.splitext(path)[1].lower()
    fourcc = {".mp4": "mp4v", ".avi": "MJPG"}.get(ext)
    if fourcc is None:
        raise VideoError(f"{path}: write .mp4 or .avi")
    tmp = f"{path}.tmp{os.getpid()}{ext}"
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise VideoError(f"{path}: cannot open a video writer")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, path)
    return path


def expand_videos(pattern: str) -> list[str]:
    """Video paths matching a glob (sorted); an empty match is an error."""
    paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not paths:
        raise VideoError(f"--videos {pattern!r} matches no file")
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
