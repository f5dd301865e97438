"""Frames per second of a detector streaming a recording: one frame at a time
(`add_frame`) against `anomaly.streaming.scored_frames` with 1 to 4 workers.

    python benchmarks/stream_speed.py --model results/anomaly/real/model \
        --video ~/.cache/convlstm-anomaly/vtest.avi --out results/anomaly/real/stream_speed.json

The frames are decoded once, before any timing, so what is timed is the
detector alone: features, networks and the in-order bookkeeping (no outputs
written; `anomaly.detect` prints the rate with them). The networks are compiled
before each timed pass. The modes take turns within each repeat, so a machine
that slows down for a while slows them alike; the JSON has every pass and the
median per mode. Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import common  # noqa: F401  (puts the repository root on sys.path)


def one_frame_at_a_time(det, frames):
    for f in frames:
        det.add_frame(f)


def with_workers(workers):
    def run(det, frames):
        from anomaly.streaming import scored_frames

        for _ in scored_frames(det, frames, workers):
            pass
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a detector folder")
    p.add_argument("--video", required=True, help="the recording to stream")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)

    from anomaly.fusion import load_detector
    from anomaly.video import read_video

    frames = list(read_video(os.path.expanduser(args.video)))
    det = load_detector([args.model])
    modes = {"one frame at a time": one_frame_at_a_time,
             **{f"{k} worker{'s' * (k > 1)}": with_workers(k) for k in (1, 2, 3, 4)}}
    fps = {m: [] for m in modes}
    for r in range(args.repeats):
        for name, run in modes.items():
            det.reset()
            det.warm_up()
            t = time.perf_counter()
            run(det, frames)
            fps[name].append(round(len(frames) / (time.perf_counter() - t), 1))
            print(f"repeat {r}: {name}: {fps[name][-1]} frames/s", flush=True)
    res = {"model": args.model, "video": os.path.basename(args.video), "frames": len(frames), "cpu_cores": os.cpu_count(),
           "frames_per_second": fps, "median": {m: float(np.median(v)) for m, v in fps.items()}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res["median"], indent=2))


if __name__ == "__main__":
    main()
