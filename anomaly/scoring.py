"""Frame-level detection metrics: ROC-AUC, PR-AUC (average precision) and the ROC
curve from scikit-learn, the EER read off that curve; alert onsets and the
operating points of a threshold (false alarms per hour against recall)."""

from __future__ import annotations

import numpy as np

from cli import InputError

# The anomaly kinds of the benchmarks (anomaly.synthetic, anomaly.footage), grouped for reporting.
PATTERN_KINDS = ("wrong_way", "crossing", "stop", "gathering")
SPEED_KINDS = ("panic", "runner", "speedup")  # speedup: real footage sped up (anomaly.footage)


def check_labels(labels, source: str = "labels") -> np.ndarray:
    """The 0/1 labels as a flat bool array; an InputError naming `source` unless
    they hold both normal (0) and anomalous (1) frames, which every metric needs."""
    y = np.asarray(labels).astype(bool).ravel()
    if y.all() or not y.any():
        raise InputError(f"{source}: all {y.size} scored frames are labelled {int(y.size > 0 and y.all())}; "
                         "the metrics need both normal (0) and anomalous (1) frames")
    return y


def _check(scores, labels):
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite (unscored frames are left out first)")
    return s, check_labels(y)


def roc_curve(scores, labels):
    """(false-positive rates, true-positive rates, thresholds), thresholds
    descending, from scikit-learn's `roc_curve` (tied scores move together;
    the first point is (0, 0) at an infinite threshold)."""
    from sklearn import metrics

    s, y = _check(scores, labels)
    fpr, tpr, thresholds = metrics.roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (scikit-learn's `roc_auc_score`; ties count one half)."""
    from sklearn import metrics

    s, y = _check(scores, labels)
    return float(metrics.roc_auc_score(y, s))


def average_precision(scores, labels) -> float:
    """PR-AUC as average precision, sum over thresholds of (R_k - R_k-1) P_k
    (scikit-learn's `average_precision_score`)."""
    from sklearn import metrics

    s, y = _check(scores, labels)
    return float(metrics.average_precision_score(y, s))


def equal_error_rate(scores, labels) -> float:
    """The error rate where the false-positive rate equals the false-negative rate,
    linearly interpolated between the two points of the ROC curve around the crossing."""
    fpr, tpr, _ = roc_curve(scores, labels)
    d = fpr - (1 - tpr)  # rises from -1 to +1 along the curve
    i = int(np.argmax(d >= 0))
    if i == 0:
        return float(fpr[0])
    a, b = d[i - 1], d[i]
    w = a / (a - b) if a != b else 0.0
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def report(scores, labels) -> dict:
    return {"roc_auc": roc_auc(scores, labels), "pr_auc": average_precision(scores, labels),
            "eer": equal_error_rate(scores, labels), "frames": int(np.size(labels)),
            "anomalous_frames": int(np.sum(labels))}


def onsets(flags) -> int:
    """Alerts in a run of per-frame flags: the frames where a flagged stretch begins."""
    f = np.asarray(flags, bool)
    return int(f[0]) + int(np.sum(f[1:] & ~f[:-1])) if f.size else 0


def operating_points(normal: list, fps: list, percentiles, anomalous=None) -> list:
    """What each threshold in a list would do: one row per percentile of the
    normal clips' pooled frame scores.

    Args:
        normal: per normal clip, its (T,) frame scores (NaN where unscored).
        fps: per normal clip, its frame rate (for the hours of footage).
        percentiles: the candidate percentiles, each in (0, 100).
        anomalous: optional (scores, labels) pairs of labelled clips, (T,) each.
    Returns:
        [{"percentile", "threshold", "frames_flagged" (share of the normal clips'
        scored frames above the threshold), "false_alarms_per_hour" (alert onsets
        per hour of the normal clips' scored footage), "recall" (share of the
        labelled clips' scored anomalous frames above it; None without them)}].
    """
    kept = [np.asarray(c, np.float64)[np.isfinite(c)] for c in normal]
    pooled = np.concatenate(kept) if kept else np.zeros(0)
    if pooled.size == 0:
        raise InputError("no scored frames on the normal clips (clips shorter than a window?)")
    hours = sum(len(c) / r for c, r in zip(kept, fps)) / 3600
    bad = None
    if anomalous:
        bad = np.concatenate([np.asarray(s, np.float64)[np.isfinite(s) & (np.asarray(y) == 1)] for s, y in anomalous])
        if bad.size == 0:
            raise InputError("the labelled clips have no scored anomalous frame")
    rows = []
    for pct in percentiles:
        if not 0 < pct < 100:
            raise InputError(f"percentile must be in (0, 100), got {pct}")
        thr = float(np.percentile(pooled, pct))
        rows.append({"percentile": float(pct), "threshold": thr, "frames_flagged": float(np.mean(pooled > thr)),
                     "false_alarms_per_hour": sum(onsets(c > thr) for c in kept) / hours,
                     "recall": None if bad is None else float(np.mean(bad > thr))})
    return rows
