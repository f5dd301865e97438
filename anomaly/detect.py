"""Score a video file, a camera or a network stream with a trained detector, as a stream.

    python -m anomaly.detect --model runs/anomaly --source clip.mp4 --out detections/
    python -m anomaly.detect --model runs/anomaly --source 0 --duration 60          # camera 0
    python -m anomaly.detect --model runs/anomaly --source rtsp://camera/stream --max-frames 5000

Frames are scored as they arrive. At each anomaly onset one line is printed
(`ALERT frame N at T s: score S > threshold H (PART)`, PART naming the fused
default's part above the threshold: reconstruct or motion), and OUT/scores.csv
(frame,score,is_anomaly; frames before the first full window have an empty
score and flag) grows row by row, so a killed run keeps what it scored. The run
stops when the source ends, drops or sends nothing for --timeout seconds, at
--max-frames or --duration, or on Ctrl-C, and then writes OUT/scores.png (score
over time, the threshold and, with --labels, the true anomalous spans) and
OUT/annotated.mp4 (a red border and the score on anomalous frames; --gif for a
GIF too), and prints the frames per second it sustained. Results come up to
three frames behind the source: the networks of three frames run at once
(`anomaly.streaming`).
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

import runio  # noqa: E402
from cli import CliParser, InputError, entry, output_dir  # noqa: E402


def parse_args(argv=None):
    p = CliParser(__doc__, "python -m anomaly.detect")
    p.add_argument("--model", required=True, action="append",
                   help="a detector folder; repeat for an ensemble (errors averaged)")
    p.add_argument("--source", required=True,
                   help="a video file, a camera index (0, 1, ...) or a stream URL (rtsp://, http://, ...)")
    p.add_argument("--out", default="detections", help="output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the detections already in --out")
    p.add_argument("--labels", default=None, help="per-frame 0/1 labels (one per line) to draw")
    p.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    p.add_argument("--stride", type=int, default=None, help="score a window every N frames (default: the model's)")
    p.add_argument("--smooth", type=int, default=None,
                   help="max over the last N frames' scores (default: the model's; 1 = off)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="a live source that sends nothing for this many seconds has ended (default: %(default)s)")
    p.add_argument("--gif", action="store_true", help="also write annotated.gif (keeps every frame in memory)")
    return p.parse_args(argv)


def check_args(args) -> None:
    """Every flag, a file source's existence and the output folder, before the
    detector is loaded (seconds of compiling) or the source opened."""
    for flag in ("max_frames", "duration", "timeout"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise InputError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise InputError(f"--threshold must be a finite number, got {args.threshold}")
    from anomaly.video import check_source

    check_source(args.source)
    runio.check_replace(args.out, "scores.csv", args.overwrite)


class CtrlC:
    """Ctrl-C as a request to stop, while the context is open: the first sets
    `pressed` and the stream stops after the frame in hand; a second stops at
    once (KeyboardInterrupt). A KeyboardInterrupt raised wherever the main thread
    happens to be can land inside the worker pool's locks (a future's condition
    held and never released), and the pool then waits forever for its worker at
    shutdown, so the first press only sets a flag. Off the main thread (where
    no signal handler can be set, and none runs) it does nothing."""

    def __init__(self):
        self.pressed, self.installed, self.previous = False, False, None

    def _handle(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:  # None: the handler before was not set from Python; Python's own then
            signal.signal(signal.SIGINT, signal.default_int_handler if self.previous is None else self.previous)


class Stream:
    """One run over a source: scores its frames (`anomaly.streaming`), appends
    each frame's row to scores.csv (flushed), writes its annotated frame, and
    prints an alert at each onset. `run()` returns when the source ends or a
    stop condition hits."""

    def __init__(self, det, out: str, max_frames=None, duration=None, keep_frames=False):
        self.det, self.out = det, out
        self.max_frames, self.duration = max_frames, duration
        self.scores, self.flags, self.frames = [], [], [] if keep_frames else None
        self.stopped_by = "end of source"
        self.frame_hw = None
        self.waited = 0.0  # seconds spent waiting for the source's next frame (reading a file: decoding it)

    def _timed(self, frames):
        it = iter(frames)
        while True:
            t = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - t
            yield frame

    def run(self, frames) -> tuple[float, float]:
        """Consumes an iterable of uint8 RGB frames; returns the frames per second
        of the detector with its outputs written (the time spent waiting for the
        source left out) and of the whole loop."""
        from anomaly.streaming import scored_frames
        from anomaly.video import VideoWriter

        video = VideoWriter(os.path.join(self.out, "annotated.mp4"))
        t0 = time.perf_counter()
        with open(os.path.join(self.out, "scores.csv"), "w", newline="") as f, CtrlC() as ctrl_c:
            rows = csv.writer(f)
            rows.writerow(["frame", "score", "is_anomaly"])
            results = scored_frames(self.det, self._timed(frames))
            try:
                for frame, r in results:
                    self.add(frame, r, rows, video, time.perf_counter() - t0)
                    f.flush()
                    if ctrl_c.pressed:
                        self.stopped_by = "Ctrl-C"
                        break
                    if self.max_frames is not None and len(self.scores) >= self.max_frames:
                        self.stopped_by = f"--max-frames {self.max_frames}"
                        break
                    if self.duration is not None and time.perf_counter() - t0 >= self.duration:
                        self.stopped_by = f"--duration {self.duration:g}"
                        break
            except KeyboardInterrupt:  # pressed twice
                self.stopped_by = "Ctrl-C"
            finally:
                results.close()
                video.close()
        n, wall = len(self.scores), time.perf_counter() - t0
        return n / max(wall - self.waited, 1e-9), n / max(wall, 1e-9)

    def add(self, frame, r, rows, video, seconds: float) -> None:
        i = len(self.scores)
        score, flag = (np.nan, None) if r is None else (r[1], bool(r[0]))
        if flag and not (self.flags and self.flags[-1]):
            part = getattr(self.det, "raised_by", None)  # a fused detector names the part above it
            print(f"ALERT frame {i} at {seconds:.1f} s: score {score:.3f} > threshold {self.det.threshold:.3f}"
                  + (f" ({part})" if part else ""), flush=True)
        self.scores.append(score)
        self.flags.append(flag)
        rows.writerow([i, "" if not np.isfinite(score) else f"{score:.6f}", "" if flag is None else int(flag)])
        ann = annotate_frame(frame, score, flag)
        video.write(ann)
        self.frame_hw = frame.shape[:2]
        if self.frames is not None:
            self.frames.append(ann)


def annotate_frame(frame, score: float, flag) -> np.ndarray:
    """A copy of the frame with its score written on it, and a red border when anomalous."""
    import cv2

    f = np.array(frame, np.uint8, copy=True)
    if flag:
        cv2.rectangle(f, (0, 0), (f.shape[1] - 1, f.shape[0] - 1), (255, 0, 0), 3)
    txt = "warming up" if not np.isfinite(score) else f"{score:.2f}{' ANOMALY' if flag else ''}"
    cv2.putText(f, txt, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 0, 0) if flag else (0, 0, 0), 1)
    return f


def scene_warnings(scores: np.ndarray, threshold: float, frame_hw: tuple, size: int) -> list[str]:
    """One line per sign that the video is outside what the detector knows: most
    frames far above the threshold (a scene unlike its training clips, not an
    anomaly in every frame), or frames squeezed to the square feature size."""
    out = []
    h, w = frame_hw
    if h != w:
        out.append(f"note: the {w}x{h} frames are squeezed to {size}x{size} for the features (aspect ratio changed)")
    s = scores[np.isfinite(scores)]
    if len(s) and threshold > 0 and np.median(s) > 5 * threshold:
        out.append(f"warning: the median score is {np.median(s) / threshold:.0f}x the threshold: this scene is "
                   "unlike the detector's training clips; calibrate on this camera's normal footage "
                   "(python -m anomaly.calibrate) or train on it")
    return out


def detect(args) -> None:
    import plots
    from anomaly.fusion import apply_overrides, load_detector
    from anomaly.video import iter_video, read_labels

    check_args(args)
    det = apply_overrides(load_detector(args.model), args)
    labels = read_labels(args.labels) if args.labels else None
    t = time.perf_counter()
    det.warm_up()
    print(f"detector ready in {time.perf_counter() - t:.1f} s (networks compiled before the source opens)", flush=True)
    source = iter_video(args.source, args.timeout)  # opened before anything is written
    output_dir(args.out)
    run = Stream(det, args.out, args.max_frames, args.duration, keep_frames=args.gif)
    fps, loop_fps = run.run(source)
    scores = np.array(run.scores)
    plots.anomaly_scores(os.path.join(args.out, "scores.png"), scores, det.threshold, labels,
                         os.path.basename(args.source))
    if args.gif:
        plots.write_gif(np.stack(run.frames), os.path.join(args.out, "annotated.gif"), fps=12)
    for line in scene_warnings(scores, det.threshold, run.frame_hw, det.feature_cfg.frame_size):
        print(line, file=sys.stderr)
    n_anom = sum(1 for a in run.flags if a)
    print(f"{len(scores)} frames at {fps:.1f} frames/s (features, model and outputs, the source's own time left "
          f"out; {loop_fps:.1f} frames/s in all; stopped by {run.stopped_by}); {n_anom} flagged anomalous; "
          f"wrote {args.out}/scores.csv, scores.png, annotated.mp4")


main = entry(parse_args, detect)


if __name__ == "__main__":
    sys.exit(main())
