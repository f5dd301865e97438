"""Frame-level evaluation on labelled videos, against a simple baseline.

    python -m anomaly.evaluate --model runs/anomaly --videos "data/crowd/test/*.mp4"

Every video needs per-frame labels, one 0/1 per line, in LABELS/NAME.labels.txt
(--labels, default: beside the video), e.g. UMN or UCSD ground truth converted
to that form. Scores are pooled over all videos as they are (no per-video
normalisation); frames before the first full window are excluded, for the model
and the baselines alike. --videos can be repeated: the clips are pooled (clips of
the same file name in two folders are reported under their paths, e.g.
val_normal_00 and test_normal_00). Two baselines, both with the detector's temporal
smoothing (--smooth): the mean optical-flow magnitude of the frame, and the
flow magnitude reduced exactly as the model's error is (--score, --border: e.g.
the fastest 8x8-pixel cell of the interior), so that a local score is compared
with a local baseline.
With --normal-videos (the clips the model was trained on), a third baseline:
the per-location normal-motion model of `anomaly.location`, fitted on them,
reduced as the model is and (a second entry) the other way, worst cell or mean.
Every metric is reported pooled and per anomaly kind (each kind's clips with the
normal clips; "speed" and "pattern" groups), the kind read from the clip name
(NAME_NN.mp4, as `anomaly.synthetic` writes them).
Where the detector's score is the largest of named parts (the fused default:
"reconstruct", "motion/surprise", "motion/pace", "motion/counts"), it also
reports which parts raise the alarm: the share of the normal and of the
anomalous frames above the threshold in each part (`flagged_by_part`; per clip
`flagged_by`), so that a false alarm on new footage can be traced to its part.
Writes OUT/metrics.json, OUT/roc.png and one score plot per video (OUT: --out,
default runs/anomaly_eval; an earlier evaluation there is replaced, whole, only
with --overwrite).
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ errors (cuInit on a CPU machine) are not ours; set 0 to see them

import numpy as np  # noqa: E402

import runio  # noqa: E402
from cli import CliParser, InputError, UserError, entry, progress  # noqa: E402


def parse_args(argv=None):
    p = CliParser(__doc__, "python -m anomaly.evaluate")
    p.add_argument("--model", required=True, action="append", help="detector folder (repeat: ensemble)")
    p.add_argument("--videos", required=True, action="append",
                   help='glob of labelled clips, e.g. "data/crowd/test/*.mp4" (repeat: pooled)')
    p.add_argument("--labels", default=None, help="folder of NAME.labels.txt (default: beside each video)")
    p.add_argument("--out", default=os.path.join("runs", "anomaly_eval"), help="output folder (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out (all of them: a folder holds one evaluation)")
    p.add_argument("--stride", type=int, default=None, help="score a window every N frames (default: the model's)")
    p.add_argument("--smooth", type=int, default=None,
                   help="max over the last N frames' scores (default: the model's; 1 = off)")
    p.add_argument("--score", default=None, choices=["mean", "local"], help="frame reduction (default: the model's)")
    p.add_argument("--border", type=int, default=None,
                   help="pixels left out at each edge when scoring (default: the model's)")
    p.add_argument("--normal-videos", default=None,
                   help="normal clips (the model's training clips) to fit the per-location baseline on; "
                        "without it that baseline is left out")
    return p.parse_args(argv)


# What an evaluation writes into --out, replaced together (no stale per-clip plots).
OUTPUTS = ("metrics.json", "roc.png", "scores_*.png")


def flow_speed(raw: np.ndarray) -> np.ndarray:
    """Optical-flow magnitude per pixel of raw features (T, S, S, C) -> (T, S, S): what
    both baselines reduce."""
    return np.hypot(raw[..., 0], raw[..., 1])


def clip_kind(stem: str) -> str:
    """The anomaly kind of a benchmark clip from its name: "wrong_way_03" -> "wrong_way"."""
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def clip_names(paths: list) -> list:
    """A unique name per video for metrics.json and the plots: its file name
    without the extension; where two videos share one, each is named by its
    path from the folder the videos have in common ("val/normal_00.mp4" and
    "test/normal_00.mp4" -> "val_normal_00", "test_normal_00")."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    full = [os.path.abspath(p) for p in paths]
    if len(set(full)) < len(full):
        dup = next(p for p in paths if full.count(os.path.abspath(p)) > 1)
        raise UserError(f"--videos: {dup} is given twice")
    common = os.path.commonpath([os.path.dirname(p) for p in full])
    return [os.path.splitext(os.path.relpath(p, common))[0].replace(os.sep, "_") for p in full]


def kind_groups(kinds: list) -> dict:
    """{group: clip kinds it pools}: "all"; each anomaly kind with the normal clips;
    "pattern" and "speed" anomalies with the normal clips (where present)."""
    from anomaly.scoring import PATTERN_KINDS, SPEED_KINDS

    present = sorted(set(kinds))
    groups = {"all": present}
    for name, members in (("speed", SPEED_KINDS), ("pattern", PATTERN_KINDS)):
        if len([k for k in present if k in members]) > 1:
            groups[name] = ["normal", *[k for k in present if k in members]]
    for k in present:
        if k != "normal":
            groups[k] = ["normal", k]
    return groups


class ScoredClip(NamedTuple):
    """kind; scores {method: (F,)} and labels (F,) of the F frames every method
    scores (those from the first full window on); the model's scores and the
    labels of every frame (T,), for the plot; the clip's summary for metrics.json."""

    kind: str
    scores: dict
    labels: np.ndarray
    model_all: np.ndarray
    labels_all: np.ndarray
    summary: dict
    fps: float = 25.0
    parts: dict | None = None  # {part: (F,) its scores} where the score is the max of several named parts


def score_clip(det, path: str, labels_dir, location=None) -> ScoredClip:
    """One labelled clip scored by the detector and every baseline, each with the
    detector's temporal smoothing."""
    from anomaly.cells import causal_max, reduce_cells, reduce_error_map
    from anomaly.video import labels_for, read_video, video_fps

    stem = os.path.splitext(os.path.basename(path))[0]
    raw = det.features(read_video(path))
    labels = labels_for(path, len(raw), labels_dir)
    named = det.named_scores(raw)
    s = np.max(np.stack(list(named.values())), axis=0)  # the detector's score (`score_features`), part by part
    speed = flow_speed(raw)
    scores = {"model": s,
              "baseline_mean_flow_magnitude": causal_max(reduce_error_map(speed, "mean"), det.smooth),
              "baseline_flow_magnitude_as_model": causal_max(reduce_error_map(speed, det.score, det.border), det.smooth)}
    if location is not None:  # under both reductions: the model's, and the other (it may suit the baseline)
        surprise = location.surprise(raw)
        for how in (det.score, other_reduction(det.score)):
            key = "baseline_per_location" + ("" if how == det.score else f"_{how}")
            scores[key] = causal_max(reduce_cells(surprise, how), det.smooth)
    keep = np.isfinite(s)
    if not keep.any():
        raise InputError(f"{path}: {len(raw)} frames, none scored: the detector's first score needs "
                         f"{det.window} frames (a full window)")
    summary = {"frames": len(raw), "anomalous": int(labels.sum()), "flagged": int(np.sum(s[keep] > det.threshold))}
    parts = {k: v[keep] for k, v in named.items()} if len(named) > 1 else None
    if parts:
        summary["flagged_by"] = {k: int(np.sum(v > det.threshold)) for k, v in parts.items()}
    return ScoredClip(clip_kind(stem), {k: v[keep] for k, v in scores.items()}, labels[keep], s, labels, summary,
                      video_fps(path), parts)


def flagged_by_part(clips: list, threshold: float) -> dict | None:
    """Which parts raise the alarm: for each named part of the score, the share
    of the normal clips' frames and of the anomalous frames where that part is
    above the threshold (a frame above it in several parts counts for each;
    None when the score is one part)."""
    if any(c.parts is None for c in clips):
        return None

    def share(sel, name, label):
        v = np.concatenate([c.parts[name][c.labels == label] for c in sel] or [np.zeros(0)])
        return float(np.mean(v > threshold)) if v.size else None

    normal = [c for c in clips if c.kind == "normal"]
    bad = [c for c in clips if c.kind != "normal"]
    return {name: {"normal_frames": share(normal, name, 0), "anomalous_frames": share(bad, name, 1)}
            for name in clips[0].parts}


def alarm_report(clips: list, threshold: float) -> dict:
    """What the model's alarm does at its calibrated threshold, per group of
    `kind_groups`: the share of anomalous frames flagged (recall), the share of
    the normal clips' frames flagged, false alarms (alert onsets) per minute of
    the normal clips, and per anomalous clip the delay from the labelled onset to
    the first flagged frame at or after it (median over the clips that were
    flagged; `missed`: anomalous clips never flagged after their onset)."""
    from anomaly.scoring import onsets

    out = {}
    normal = [c for c in clips if c.kind == "normal"]
    minutes = sum(len(c.labels) / c.fps for c in normal) / 60
    false = {"normal_frames_flagged": float(np.mean(np.concatenate([c.scores["model"] for c in normal]) > threshold))
             if normal else None,
             "false_alarms_per_min": sum(onsets(c.scores["model"] > threshold) for c in normal) / minutes
             if minutes else None}
    for group, kinds in kind_groups([c.kind for c in clips]).items():
        # a clip whose labelled frames all come before its first scored frame has no onset to alert on
        bad = [c for c in clips if c.kind in kinds and c.kind != "normal" and c.labels.any()]
        if not bad:
            continue
        delays, missed = [], 0
        for c in bad:
            onset = int(np.argmax(c.labels))
            hit = np.flatnonzero(c.scores["model"][onset:] > threshold)
            if hit.size:
                delays.append(hit[0] / c.fps)
            else:
                missed += 1
        flagged = np.concatenate([c.scores["model"][c.labels == 1] > threshold for c in bad])
        out[group] = {"recall": float(flagged.mean()), **false,
                      "median_delay_s": float(np.median(delays)) if delays else None,
                      "missed_clips": missed, "anomalous_clips": len(bad)}
    return out


def other_reduction(how: str) -> str:
    return "mean" if how == "local" else "local"


def per_group_reports(clips: list, methods) -> dict:
    """{group: {method: scoring.report}} for every group of `kind_groups` that has
    both normal and anomalous frames; clips are `ScoredClip`s."""
    from anomaly import scoring

    out = {}
    for group, kinds in kind_groups([c.kind for c in clips]).items():
        sel = [c for c in clips if c.kind in kinds]
        y = np.concatenate([c.labels for c in sel])
        if y.all() or not y.any():
            continue
        out[group] = {m: scoring.report(np.concatenate([c.scores[m] for c in sel]), y) for m in methods}
    return out


def evaluate(args) -> dict:
    """Scores every clip of `args.videos`, writes OUT/metrics.json, OUT/roc.png and one
    score plot per clip; returns the metrics."""
    from anomaly.video import expand_videos, read_video  # no Keras: bad globs fail in a blink

    runio.check_replace(args.out, "metrics.json", args.overwrite)
    paths = [p for pattern in args.videos for p in expand_videos(pattern)]
    normal = expand_videos(args.normal_videos, "--normal-videos") if args.normal_videos else []
    import plots
    from anomaly.fusion import apply_overrides, load_detector
    from anomaly.location import LocationModel
    from anomaly.scoring import check_labels

    det = apply_overrides(load_detector(args.model), args)
    names = clip_names(paths)
    location = None
    if normal:  # the per-location baseline, fitted on the normal clips given
        location = LocationModel(border=det.border).fit([det.features(read_video(p)) for p in normal])
    methods = {"model": det.label,
               "baseline_mean_flow_magnitude": "mean flow magnitude",
               "baseline_flow_magnitude_as_model": f"flow magnitude ({det.score}, border {det.border})"}
    if location is not None:
        methods["baseline_per_location"] = f"per-location motion model ({det.score})"
        methods[f"baseline_per_location_{other_reduction(det.score)}"] = \
            f"per-location motion model ({other_reduction(det.score)})"
    clips, bar = {}, progress(len(paths), "clips")
    for i, (p, name) in enumerate(zip(paths, names)):
        clips[name] = score_clip(det, p, args.labels, location)
        if bar is not None:
            bar.update(i + 1)
    y = np.concatenate([c.labels for c in clips.values()])
    check_labels(y, "--videos")  # before any metric: each would refuse it only after the others ran
    per_video = {stem: c.summary for stem, c in clips.items()}
    per_kind = per_group_reports(list(clips.values()), methods)
    s = np.concatenate([c.scores["model"] for c in clips.values()])
    res = {"videos": paths, "threshold": det.threshold, "stride": det.stride, "score": det.score,
           "smooth": det.smooth, "border": det.border, **per_kind.get("all", {}),
           "per_kind": per_kind, "normal_videos": args.normal_videos,
           "at_threshold": {"tpr": float(np.mean(s[y == 1] > det.threshold)),
                            "fpr": float(np.mean(s[y == 0] > det.threshold))},
           "alarm": alarm_report(list(clips.values()), det.threshold),
           "flagged_by_part": flagged_by_part(list(clips.values()), det.threshold),
           "per_video": per_video, "models": args.model}
    with runio.output_set(args.out, OUTPUTS) as stage:
        for stem, c in clips.items():
            plots.anomaly_scores(os.path.join(stage, f"scores_{stem}.png"), c.model_all, det.threshold,
                                 c.labels_all, stem)
        plots.roc_figure({label: np.concatenate([c.scores[m] for c in clips.values()]) for m, label in methods.items()},
                         y, os.path.join(stage, "roc.png"))
        runio.write_json(res, os.path.join(stage, "metrics.json"))
    print(f"{'ROC-AUC (pooled with the normal clips)':40s}" + "".join(f"{m[:22]:>24s}" for m in methods))
    for group, rep in per_kind.items():
        print(f"{group:40s}" + "".join(f"{rep[m]['roc_auc']:24.3f}" for m in methods))
    print("at the calibrated threshold (model):")
    for group, a in res["alarm"].items():
        delay = "-" if a["median_delay_s"] is None else f"{a['median_delay_s']:.1f} s"
        print(f"  {group:20s} recall {a['recall']:.2f}, normal frames flagged {a['normal_frames_flagged'] or 0:.3f}, "
              f"false alarms/min {a['false_alarms_per_min'] or 0:.2f}, median delay {delay}, "
              f"missed {a['missed_clips']}/{a['anomalous_clips']} clips")
    if res["flagged_by_part"]:
        print("frames above the threshold in each part (normal / anomalous):")
        for name, share in res["flagged_by_part"].items():
            print(f"  {name:20s} " + " / ".join("-" if v is None else f"{v:.3f}" for v in share.values()))
    return res


main = entry(parse_args, evaluate)


if __name__ == "__main__":
    sys.exit(main())
