"""Frame metrics: pure NumPy functions (the reference) and Keras metric classes
(for the training logs).

All functions take frames (..., H, W, C) in [0, data_range] and return one value
per frame (the leading shape is kept). SSIM is the Gaussian-window SSIM of Wang
et al. 2004 as in `tf.image.ssim`: an 11x11 window with sigma 1.5, K1 = 0.01,
K2 = 0.03, "valid" filtering, averaged over pixels and then channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
from keras import ops

PACKAGE = "convlstm"
PSNR_MAX_DB = 100.0  # PSNR of an exact match (MSE 0) is reported as this cap


def _pair(y_true, y_pred):
    a = np.asarray(y_true, np.float64)
    b = np.asarray(y_pred, np.float64)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"frames must share a shape (..., H, W, C); got {a.shape} and {b.shape}")
    return a, b


def mse(y_true, y_pred):
    """Mean squared error per frame (mean over H, W, C)."""
    a, b = _pair(y_true, y_pred)
    return np.mean((a - b) ** 2, axis=(-3, -2, -1))


def mae(y_true, y_pred):
    """Mean absolute error per frame (mean over H, W, C)."""
    a, b = _pair(y_true, y_pred)
    return np.mean(np.abs(a - b), axis=(-3, -2, -1))


def mse_frame(y_true, y_pred):
    """Squared error per frame *summed* over pixels and channels (the Moving MNIST
    papers' "MSE per frame": per-pixel MSE x 4096 for 64x64x1)."""
    a, b = _pair(y_true, y_pred)
    return np.sum((a - b) ** 2, axis=(-3, -2, -1))


def mae_frame(y_true, y_pred):
    """Absolute error per frame summed over pixels and channels."""
    a, b = _pair(y_true, y_pred)
    return np.sum(np.abs(a - b), axis=(-3, -2, -1))


def psnr(y_true, y_pred, data_range: float = 1.0):
    """Peak signal-to-noise ratio per frame in dB: 10 log10(range^2 / MSE), capped
    at `PSNR_MAX_DB` for an exact match."""
    m = mse(y_true, y_pred)
    with np.errstate(divide="ignore"):
        v = 10.0 * np.log10(data_range**2 / m)
    return np.minimum(v, PSNR_MAX_DB)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian taps of the SSIM window."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x, g):
    """Separable 'valid' filtering of (M, H, W, C) with taps g along H then W."""
    k = len(g)
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    y = sum(g[i] * x[:, i:i + h] for i in range(k))
    return sum(g[i] * y[:, :, i:i + w] for i in range(k))


def ssim(y_true, y_pred, data_range: float = 1.0, size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03):
    """Structural similarity per frame (Gaussian window, as `tf.image.ssim`)."""
    a, b = _pair(y_true, y_pred)
    lead, (h, w, c) = a.shape[:-3], a.shape[-3:]
    if h < size or w < size:
        raise ValueError(f"frames of {h}x{w} are smaller than the {size}x{size} SSIM window")
    a = a.reshape(-1, h, w, c)
    b = b.reshape(-1, h, w, c)
    g = gaussian_window(size, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    out = np.empty(len(a))
    for i in range(0, len(a), 256):  # bounded memory on large sets
        x, y = a[i:i + 256], b[i:i + 256]
        mx, my = _filter_valid(x, g), _filter_valid(y, g)
        sxx = _filter_valid(x * x, g) - mx * mx
        syy = _filter_valid(y * y, g) - my * my
        sxy = _filter_valid(x * y, g) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        out[i:i + 256] = s.mean(axis=(1, 2, 3))
    return out.reshape(lead)


def pixel_accuracy(y_true, y_pred, threshold: float = 0.5):
    """Fraction of pixels on the same side of `threshold` in truth and forecast, per
    frame. Flattering on Moving MNIST: ~93% of true pixels are black, so an all-black
    forecast already scores ~0.93."""
    a, b = _pair(y_true, y_pred)
    return np.mean((a > threshold) == (b > threshold), axis=(-3, -2, -1))


def frame_metrics(y_true, y_pred) -> dict:
    """Every metric of `METRICS` per frame (NumPy): {name: array of the leading shape}."""
    return {k: m.reference(y_true, y_pred) for k, m in METRICS.items()}


# ------------------------------------------------------------------- Keras side

def _frames(x):
    """(..., H, W, C) -> (M, H, W, C) float32."""
    x = ops.cast(x, "float32")
    return ops.reshape(x, (-1, *x.shape[-3:]))


def psnr_tensor(y_true, y_pred, data_range: float = 1.0):
    """PSNR per frame with Keras ops (capped like `psnr`): (..., H, W, C) -> (M,)."""
    a, b = _frames(y_true), _frames(y_pred)
    m = ops.mean(ops.square(a - b), axis=(1, 2, 3))
    v = 10.0 * ops.log(data_range**2 / ops.maximum(m, 1e-30)) / np.log(10.0)
    return ops.minimum(v, PSNR_MAX_DB)


def band_matrix(n: int, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """(n - size + 1, n) matrix G with G @ v = 'valid' Gaussian filtering of v (length n)."""
    g = gaussian_window(size, sigma)
    m = np.zeros((n - size + 1, n))
    for i in range(n - size + 1):
        m[i, i:i + size] = g
    return m


def ssim_tensor(y_true, y_pred, data_range: float = 1.0, size: int = 11, sigma: float = 1.5):
    """SSIM per frame with Keras ops, the same formula as `ssim`: (..., H, W, C) -> (M,).

    The separable Gaussian filter is two matrix products, Gh @ X @ Gw^T, with
    banded matrices (`band_matrix`): several times faster on a CPU than a
    depthwise convolution, and the same numbers."""
    a, b = _frames(y_true), _frames(y_pred)
    h, w = a.shape[1], a.shape[2]
    gh = ops.convert_to_tensor(band_matrix(h, size, sigma).astype("float32"))
    gwt = ops.convert_to_tensor(band_matrix(w, size, sigma).T.astype("float32"))
    a, b = ops.transpose(a, (0, 3, 1, 2)), ops.transpose(b, (0, 3, 1, 2))  # (M, C, H, W)

    def filt(x):
        return ops.matmul(ops.matmul(gh, x), gwt)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = filt(a), filt(b)
    sxx = filt(a * a) - mx * mx
    syy = filt(b * b) - my * my
    sxy = filt(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return ops.mean(s, axis=(1, 2, 3))


def mse_tensor(y_true, y_pred):
    """`mse` with Keras ops: (..., H, W, C) -> (M,)."""
    d = _frames(y_true) - _frames(y_pred)
    return ops.mean(d * d, axis=(1, 2, 3))


def mae_tensor(y_true, y_pred):
    """`mae` with Keras ops: (..., H, W, C) -> (M,)."""
    return ops.mean(ops.abs(_frames(y_true) - _frames(y_pred)), axis=(1, 2, 3))


def mse_frame_tensor(y_true, y_pred):
    """`mse_frame` with Keras ops: (..., H, W, C) -> (M,)."""
    d = _frames(y_true) - _frames(y_pred)
    return ops.sum(d * d, axis=(1, 2, 3))


def mae_frame_tensor(y_true, y_pred):
    """`mae_frame` with Keras ops: (..., H, W, C) -> (M,)."""
    return ops.sum(ops.abs(_frames(y_true) - _frames(y_pred)), axis=(1, 2, 3))


def frame_metrics_tensor(y_true, y_pred) -> dict:
    """`frame_metrics` with Keras ops in float32 (what evaluate.py runs on large
    sets): {name: (M,) per frame}, M = the product of the leading dimensions."""
    a, b = _frames(y_true), _frames(y_pred)
    return {k: m.tensor(a, b) for k, m in METRICS.items()}


def pixel_accuracy_tensor(y_true, y_pred, threshold: float = 0.5):
    """`pixel_accuracy` with Keras ops: (..., H, W, C) -> (M,)."""
    a, b = _frames(y_true), _frames(y_pred)
    same = ops.cast(ops.equal(a > threshold, b > threshold), "float32")
    return ops.mean(same, axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelAccuracy(keras.metrics.MeanMetricWrapper):
    """Mean pixel accuracy with truth and forecast both thresholded at 0.5
    (`keras.metrics.BinaryAccuracy` thresholds only the forecast and so counts
    every grey true pixel as wrong); `pixel_accuracy` is its NumPy twin."""

    def __init__(self, name: str = "pixel_acc", dtype=None, threshold: float = 0.5):
        super().__init__(pixel_accuracy_tensor, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "threshold": self.threshold}


class _RangeMetric(keras.metrics.MeanMetricWrapper):
    """The mean over frames of a per-frame metric of frames in [0, data_range]."""

    def __init__(self, fn, name: str, dtype=None, data_range: float = 1.0):
        super().__init__(fn, name=name, dtype=dtype, data_range=data_range)
        self.data_range = data_range

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "data_range": self.data_range}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PSNR(_RangeMetric):
    """Mean PSNR (dB) over frames; `psnr` is its NumPy twin."""

    def __init__(self, name: str = "psnr", dtype=None, data_range: float = 1.0):
        super().__init__(psnr_tensor, name, dtype, data_range)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SSIM(_RangeMetric):
    """Mean SSIM over frames; `ssim` is its NumPy twin."""

    def __init__(self, name: str = "ssim", dtype=None, data_range: float = 1.0):
        super().__init__(ssim_tensor, name, dtype, data_range)


# ------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class FrameMetric:
    """One per-frame metric: its NumPy reference and Keras-ops twin (both
    (..., H, W, C) pairs -> one value per frame), what it measures, and whether
    evaluate.py draws it per forecast step."""

    reference: Callable
    tensor: Callable
    description: str
    curve: bool = False


# Everything that reports metrics (evaluate.py's tables, metrics.json, the
# per-step figures) derives from this table: adding a metric touches this file.
METRICS = {
    "psnr": FrameMetric(psnr, psnr_tensor, f"dB, per frame, capped at {PSNR_MAX_DB:g}", curve=True),
    "ssim": FrameMetric(ssim, ssim_tensor, "Gaussian window 11x11, sigma 1.5 (as tf.image.ssim)", curve=True),
    "mse": FrameMetric(mse, mse_tensor, "per pixel"),
    "mae": FrameMetric(mae, mae_tensor, "per pixel"),
    "mse_frame": FrameMetric(mse_frame, mse_frame_tensor, "squared error summed over the pixels of a frame",
                             curve=True),
    "mae_frame": FrameMetric(mae_frame, mae_frame_tensor, "absolute error summed over the pixels of a frame"),
}
