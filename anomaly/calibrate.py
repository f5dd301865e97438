"""Recalibrate a trained detector's threshold on held-out normal clips.

    python -m anomaly.calibrate --model runs/anomaly --videos "data/crowd/train/normal_0[89].mp4"

Sets the threshold to the --percentile of frame scores on the given normal
clips (use clips the autoencoder did not train on: anomaly.train's validation
clips are listed in detector.json), optionally with another --score reduction,
--smooth, --border or --stride (scoring only; the training stride is kept in
`train_stride`),
and rewrites detector.json (written then renamed). Use it to adapt a detector to
a new camera's normal footage without retraining.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

from cli import CliParser, run_cli  # noqa: E402


def main(argv=None) -> int:
    p = CliParser(__doc__, "python -m anomaly.calibrate")
    p.add_argument("--model", required=True, help="the detector folder whose threshold is rewritten")
    p.add_argument("--videos", required=True, help="glob of held-out normal clips")
    p.add_argument("--percentile", type=float, default=None, help="default: the model's")
    p.add_argument("--score", default=None, choices=["mean", "local"], help="default: the model's")
    p.add_argument("--smooth", type=int, default=None, help="frames of causal max smoothing (default: the model's)")
    p.add_argument("--border", type=int, default=None, help="pixels left out at each edge (default: the model's)")
    p.add_argument("--stride", type=int, default=None, help="score a window every N frames (default: the model's)")
    args = p.parse_args(argv)
    def run():
        import dataclasses

        from anomaly.detector import META, Detector, apply_overrides, percentile_threshold
        from anomaly.video import expand_videos, read_video

        det = apply_overrides(Detector.load(args.model), args)
        pct = args.percentile if args.percentile is not None else det.configs[0].percentile
        videos = expand_videos(args.videos)
        scores = np.concatenate([det.score_frames(read_video(v)) for v in videos])
        old = det.configs[0]
        new = dataclasses.replace(old, threshold=percentile_threshold(scores, pct), percentile=pct,
                                  calibrated_on=videos, score=det.score, smooth=det.smooth, border=det.border,
                                  stride=det.stride, train_stride=old.train_stride or old.stride)
        new.save(os.path.join(args.model, META))
        print(f"threshold {new.threshold:.4f} = {pct:g}th percentile of {np.isfinite(scores).sum()} "
              f"frame scores ({new.score})")
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
