"""Frame-level detection metrics: ROC-AUC, PR-AUC (average precision) and the ROC
curve from scikit-learn, the EER read off that curve."""

from __future__ import annotations

import numpy as np

from cli import InputError

# The anomaly kinds of the benchmarks (anomaly.synthetic, anomaly.footage), grouped for reporting.
PATTERN_KINDS = ("wrong_way", "crossing", "stop", "gathering")
SPEED_KINDS = ("panic", "runner", "speedup")  # speedup: real footage sped up (anomaly.footage)


def _check(scores, labels):
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite (unscored frames are left out first)")
    if y.all() or not y.any():
        raise InputError("labels need both normal and anomalous frames")
    return s, y


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
