"""Score a video with a trained detector, frame by frame, as a stream.

    python -m anomaly.detect --model runs/anomaly --source clip.mp4 --out detections/

Writes OUT/scores.csv (frame,score,is_anomaly; frames before the first full
window have empty score and flag), OUT/scores.png (score over time, the
threshold and, with --labels, the true anomalous spans) and OUT/annotated.mp4
(a red border and the score on anomalous frames; --gif for a GIF too). Prints
the streaming detector's frames per second (features + model).
"""

from __future__ import annotations

import csv
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cli import CliParser, output_dir, run_cli  # noqa: E402


def parse_args(argv=None):
    p = CliParser(__doc__, "python -m anomaly.detect")
    p.add_argument("--model", required=True, action="append",
                   help="a detector folder; repeat for an ensemble (errors averaged)")
    p.add_argument("--source", required=True, help="a video file")
    p.add_argument("--out", default="detections")
    p.add_argument("--labels", default=None, help="per-frame 0/1 labels (one per line) to draw")
    p.add_argument("--threshold", type=float, default=None, help="override the calibrated threshold")
    p.add_argument("--stride", type=int, default=None, help="score a window every N frames")
    p.add_argument("--smooth", type=int, default=None,
                   help="max over the last N frames' scores (default: the model's; 1 = off)")
    p.add_argument("--gif", action="store_true", help="also write annotated.gif")
    return p.parse_args(argv)


def stream(det, source: str):
    """Runs the streaming API over a video: (scores with NaN before the first
    window, flags, frames (for annotation), frames per second)."""
    from anomaly.video import iter_video

    scores, flags, frames = [], [], []
    t0 = time.perf_counter()
    for frame in iter_video(source):
        r = det.add_frame(frame)
        frames.append(frame)
        scores.append(np.nan if r is None else r[1])
        flags.append(None if r is None else bool(r[0]))
    fps = len(frames) / (time.perf_counter() - t0)
    return np.array(scores), flags, np.stack(frames), fps


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


def write_csv(path, scores, flags):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "score", "is_anomaly"])
        for i, (s, a) in enumerate(zip(scores, flags)):
            w.writerow([i, "" if not np.isfinite(s) else f"{s:.6f}", "" if a is None else int(a)])
    os.replace(tmp, path)


def annotate(frames, scores, flags, threshold):
    import cv2

    out = frames.copy()
    for i, (f, s, a) in enumerate(zip(out, scores, flags)):
        if a:
            cv2.rectangle(f, (0, 0), (f.shape[1] - 1, f.shape[0] - 1), (255, 0, 0), 3)
        txt = "warming up" if not np.isfinite(s) else f"{s:.2f}{' ANOMALY' if a else ''}"
        cv2.putText(f, txt, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 0, 0) if a else (0, 0, 0), 1)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)

    def run():
        import plots
        from anomaly.detector import Detector, apply_overrides
        from anomaly.video import read_labels, write_video

        det = apply_overrides(Detector.load(args.model), args)
        labels = read_labels(args.labels) if args.labels else None
        output_dir(args.out)
        scores, flags, frames, fps = stream(det, args.source)
        write_csv(os.path.join(args.out, "scores.csv"), scores, flags)
        plots.anomaly_scores(os.path.join(args.out, "scores.png"), scores, det.threshold, labels,
                             os.path.basename(args.source))
        ann = annotate(frames, scores, flags, det.threshold)
        write_video(os.path.join(args.out, "annotated.mp4"), ann)
        if args.gif:
            plots.write_gif(ann, os.path.join(args.out, "annotated.gif"), fps=12)
        for line in scene_warnings(scores, det.threshold, frames.shape[1:3], det.feature_cfg.frame_size):
            print(line, file=sys.stderr)
        n_anom = sum(1 for a in flags if a)
        print(f"{len(frames)} frames at {fps:.1f} frames/s (features + model, streaming); "
              f"{n_anom} flagged anomalous; wrote {args.out}/scores.csv, scores.png, annotated.mp4")
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
