"""Recalibrate a trained detector's threshold on held-out normal clips.

    python -m anomaly.calibrate --model runs/anomaly --videos "data/crowd/train/normal_0[89].mp4"

Sets the threshold to the --percentile of frame scores on the given normal
clips (use clips the autoencoder did not train on: anomaly.train's validation
clips are listed in detector.json), optionally with another --score reduction,
--smooth, --border or --stride (scoring only; the training stride is kept in
`train_stride`),
and rewrites detector.json (written then renamed). A motion detector's part
scales are recalibrated on the same clips first (at --scale-percentile); a
fused detector's parts are recalibrated each, then their scales (at
--scale-percentile) and its threshold. Use it
to adapt a detector to a new camera's normal footage without retraining.

It then prints the operating points: for each percentile of OPERATING_POINTS
(and --percentile), the threshold it gives, the share of the clips' frames above
it and the false alarms (alert onsets) per hour of their footage; with
--labelled-videos (clips with NAME.labels.txt beside them, e.g. a few recorded
or staged incidents), also the share of their anomalous frames flagged (recall),
so that a user can pick a percentile and run this again with it. The false
alarms are counted on the calibration clips themselves, whose share above the
threshold is the percentile's complement by construction; with two or more
clips the table also gives the held-out share, each clip scored by the detector
calibrated on the others (`held_out_flagged`): what the threshold does on
footage it has not seen, and the number to trust when the two differ.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

from cli import CliParser, InputError, run_cli  # noqa: E402

OPERATING_POINTS = (90.0, 95.0, 98.0, 99.0, 99.5)  # percentiles printed beside the one set


def main(argv=None) -> int:
    p = CliParser(__doc__, "python -m anomaly.calibrate")
    p.add_argument("--model", required=True, help="the detector folder whose threshold is rewritten")
    p.add_argument("--videos", required=True, help="glob of held-out normal clips")
    p.add_argument("--percentile", type=float, default=None, help="default: the model's")
    p.add_argument("--score", default=None, choices=["mean", "local"], help="default: the model's")
    p.add_argument("--smooth", type=int, default=None, help="frames of causal max smoothing (default: the model's)")
    p.add_argument("--border", type=int, default=None, help="pixels left out at each edge (default: the model's)")
    p.add_argument("--stride", type=int, default=None, help="score a window every N frames (default: the model's)")
    p.add_argument("--scale-percentile", type=float, default=None,
                   help="motion detectors: the percentile of each part's values that becomes its scale "
                        "(default: the model's; 95 for detectors trained before it was recorded)")
    p.add_argument("--labelled-videos", default=None,
                   help="glob of labelled clips (NAME.labels.txt beside each): adds recall to the operating points")
    args = p.parse_args(argv)
    def run():
        from anomaly.video import expand_videos, read_video  # no Keras: bad flags and globs fail in a blink

        if args.percentile is not None and not 0 < args.percentile < 100:
            raise InputError(f"--percentile must be in (0, 100), got {args.percentile}")
        if args.scale_percentile is not None and not 0 < args.scale_percentile <= 100:
            raise InputError(f"--scale-percentile must be in (0, 100], got {args.scale_percentile}")
        videos = expand_videos(args.videos)
        labelled = expand_videos(args.labelled_videos, "--labelled-videos") if args.labelled_videos else []
        from anomaly.detector import META, ReconstructionDetector
        from anomaly.fusion import FusedDetector, apply_overrides, load_detector

        det = apply_overrides(load_detector(args.model), args, rescale=True)
        if args.scale_percentile is not None and isinstance(det, ReconstructionDetector):
            raise InputError(f"--scale-percentile: {args.model} is an autoencoder (its score has no parts to scale)")
        feats = [det.features(read_video(v)) for v in videos]
        chosen = args.percentile or (det.config if isinstance(det, FusedDetector) else det.configs[0]).percentile
        held_out = held_out_flagged(det, feats, operating_percentiles(chosen), args.scale_percentile)  # before
        # the calibration below, which replaces the one it leaves
        if not isinstance(det, FusedDetector):
            scores, new = recalibrate(det, feats, videos, args)
            new.save(os.path.join(args.model, META))
            pct = args.percentile or det.configs[0].percentile
            n = sum(int(np.isfinite(s).sum()) for s in scores)
            print(f"threshold {det.threshold:.4f} = {pct:g}th percentile of {n} frame scores ({det.score})")
        else:
            per_clip = [{} for _ in feats]  # {part: (T,) scores} per clip, scored once for every use below
            parts = {}
            for name, part in det.parts.items():
                part_scores, parts[name] = recalibrate(part, feats, videos, args)
                for clip, s in zip(per_clip, part_scores):
                    clip[name] = s
            cfg = det.calibrate_scores(per_clip, args.percentile, args.scale_percentile, videos)
            for name, new in parts.items():  # written together once every part has calibrated: a failure
                new.save(os.path.join(args.model, name, META))  # above leaves the folder as it was
            cfg.save(os.path.join(args.model, META))
            scores, pct = [det.fuse(c) for c in per_clip], cfg.percentile
            print(f"threshold {cfg.threshold:.4f} = {pct:g}th percentile of the fused frame scores; "
                  "part scales " + ", ".join(f"{n} {v:.4g}" for n, v in cfg.scales.items()))
        print_operating_points(det, scores, videos, labelled, pct, held_out)
    return run_cli(run)


def held_out_flagged(det, feats: list, percentiles, scale_percentile=None) -> dict | None:
    """Leave one clip out: {percentile: the share of a clip's scored frames
    above the threshold (and part scales) calibrated on the other clips, pooled
    over the clips}; None with fewer than two clips of a full window. The
    calibration clips' own share is the percentile's complement by construction;
    this is what the threshold does on footage it was not calibrated on. Leaves
    `det` calibrated on the last fold: calibrate it afterwards."""
    from anomaly.cells import percentile_threshold
    from anomaly.fusion import FusedDetector

    feats = [f for f in feats if len(f) >= det.window]  # clips with a score to hold out
    if len(feats) < 2:
        return None
    fused = isinstance(det, FusedDetector)
    parts = det.parts if fused else {"score": det}
    fixed = {}  # the scores of parts with no scales to refit (rescale returns their config as it is), scored once
    above = {p: [] for p in percentiles}
    for k in range(len(feats)):
        others = feats[:k] + feats[k + 1:]
        per_clip = [{} for _ in feats]
        for name, part in parts.items():
            unchanged = part.rescale(others, scale_percentile) is part.configs[0]
            if unchanged and name in fixed:
                scores = fixed[name]
            else:
                scores = [part.score_features(f) for f in feats]
                if unchanged:
                    fixed[name] = scores
            for clip, s in zip(per_clip, scores):
                clip[name] = s
        if fused:
            det.calibrate_scores([c for j, c in enumerate(per_clip) if j != k], None, scale_percentile)
        score = [det.fuse(c) if fused else c["score"] for c in per_clip]
        rest = np.concatenate([s for j, s in enumerate(score) if j != k])
        mine = score[k][np.isfinite(score[k])]
        for p in percentiles:
            above[p].append(mine > percentile_threshold(rest, p))
    return {p: float(np.mean(np.concatenate(above[p]))) for p in percentiles}


def operating_percentiles(chosen: float) -> list:
    """OPERATING_POINTS and the chosen percentile, in order."""
    return sorted(set(OPERATING_POINTS) | {float(chosen)})


def footage(seconds: float) -> str:
    """A duration as a reader wants it: '20 s', '4.5 min', '2.0 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_operating_points(det, scores: list, videos: list, labelled: list, chosen: float,
                           held_out: dict | None = None) -> None:
    """The table of `anomaly.scoring.operating_points` for the calibrated
    detector, from its (T,) scores of each calibration clip: OPERATING_POINTS
    and the chosen percentile (marked *), with `held_out_flagged`'s column."""
    from anomaly.scoring import operating_points
    from anomaly.video import labels_for, read_video, video_fps

    anomalous = []
    for v in labelled:
        raw = det.features(read_video(v))
        anomalous.append((det.score_features(raw), labels_for(v, len(raw))))
    pcts = operating_percentiles(chosen)
    fps = [video_fps(v) for v in videos]
    rows = operating_points(scores, fps, pcts, anomalous)
    # how much footage the false alarms per hour stand on: from 20 s they are a rough guide, from an hour a measurement
    seconds = sum(len(s) / f for s, f in zip(scores, fps))
    print(f"operating points (false alarms on the {len(videos)} calibration clip(s), {footage(seconds)} of footage"
          + (f"; recall on the anomalous frames of {len(labelled)} labelled clip(s))" if labelled else ")"))
    print("  percentile   threshold   frames flagged   held-out flagged   false alarms/hour   recall")
    for r in rows:
        recall = "-" if r["recall"] is None else f"{r['recall']:.2f}"
        mark = "*" if r["percentile"] == float(chosen) else " "
        held = "-" if held_out is None else f"{held_out[r['percentile']]:.1%}"
        print(f"  {r['percentile']:9g}{mark}  {r['threshold']:10.4f}   {r['frames_flagged']:13.1%}   {held:>16s}   "
              f"{r['false_alarms_per_hour']:17.1f}   {recall}")


def recalibrate(det, feats: list, videos: list, args) -> tuple:
    """Recalibrates one part's threshold (and a motion detector's scales) on
    normal clips' raw features; returns its (T,) frame scores of each clip
    (which the threshold does not change) and its new DetectorConfig, for the
    caller to save."""
    import dataclasses

    from anomaly.cells import percentile_threshold

    pct = args.percentile if args.percentile is not None else det.configs[0].percentile
    old = det.rescale(feats, args.scale_percentile)
    per_clip = [det.score_features(f) for f in feats]
    det.threshold = percentile_threshold(np.concatenate(per_clip), pct)
    new = dataclasses.replace(old, threshold=det.threshold, percentile=pct, calibrated_on=videos, score=det.score,
                              smooth=det.smooth, border=det.border, stride=det.stride,
                              train_stride=old.train_stride or old.stride)
    return per_clip, new


if __name__ == "__main__":
    sys.exit(main())
