"""Frame-level detection metrics (NumPy): ROC-AUC, PR-AUC (average precision), EER."""

from __future__ import annotations

import numpy as np

from cli import InputError

# The anomaly kinds of the synthetic benchmark (anomaly.synthetic), grouped for reporting.
PATTERN_KINDS = ("wrong_way", "crossing", "stop", "gathering")
SPEED_KINDS = ("panic", "runner")
KINDS = ("normal", *SPEED_KINDS, *PATTERN_KINDS)


def _check(scores, labels):
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ")
    if y.all() or not y.any():
        raise InputError("labels need both normal and anomalous frames")
    return s, y


def roc_curve(scores, labels):
    """(false-positive rates, true-positive rates, thresholds), thresholds descending;
    tied scores move together."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def average_precision(scores, labels) -> float:
    """PR-AUC as average precision: sum over thresholds of (R_k - R_k-1) P_k."""
    s, y = _check(scores, labels)
    fpr, tpr, _ = roc_curve(s, y)
    tp = tpr[1:] * y.sum()
    fp = fpr[1:] * (~y).sum()
    precision = tp / np.maximum(tp + fp, 1)
    return float(np.sum(np.diff(tpr) * precision))


def equal_error_rate(scores, labels) -> float:
    """The error rate where false-positive rate = false-negative rate (interpolated)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    fnr = 1 - tpr
    d = fpr - fnr
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
