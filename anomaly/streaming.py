"""A detector over a stream of frames with the networks of several frames running
at once.

A streamed frame is three steps (`Detector.push`, `score_pending`, `finish`):
buffering its features and the bookkeeping that must go in stream order (stride,
smoothing, fusion of the parts) are cheap; the networks are not (the default
autoencoder re-reads its 16-frame window at every frame) and read no stream
state. So the frame's features are computed and pushed here, its networks are
handed to a pool of `workers` threads (TensorFlow releases the GIL while it
runs), and results come back in order, up to `workers` frames behind the
source. The scores are the ones `add_frame` gives frame by frame (tested); on 2
cores three workers score the real recording ~1.4x faster than one frame at a
time (anomaly/README.md, Speed).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

# benchmarks/stream_speed.py on 2 cores, median frames/s: one frame at a time 27.2, and
# 1 / 2 / 3 / 4 workers 25.7 / 37.1 / 39.4 / 37.7 (results/anomaly/real/stream_speed.json)
WORKERS = 3


def scored_frames(det, frames, workers: int = WORKERS):
    """Yields (frame, result) for each frame of `frames`, in order, with result
    as `det.add_frame(frame)` gives it: None before the first full window, then
    (is_anomaly, score).

    Args:
        det: a `Detector` or `FusedDetector`, reset for a new stream; its
            networks are compiled first (`warm_up`).
        frames: an iterable of (H, W, 3) uint8 RGB or (H, W) gray frames.
        workers: frames whose networks may run at once (1 or more).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    det.warm_up()
    pending = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="detector") as pool:
        try:
            for frame in frames:
                pending.append((frame, pool.submit(det.score_pending, det.push(*det.frame_features(frame)))))
                while len(pending) > workers:
                    done, job = pending.popleft()
                    yield done, det.finish(job.result())
            while pending:
                done, job = pending.popleft()
                yield done, det.finish(job.result())
        finally:  # stopped early (a break, Ctrl-C, an error): frames not yet finished are dropped
            for _, job in pending:
                job.cancel()
