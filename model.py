"""The ConvLSTM predictor: building blocks and `build_model(config)`.

Contract: input (N, T, H, W, C) in [0, 1]; output the same shape; output t is the
forecast of frame t + 1 and depends on input frames <= t only (in inference
mode; in training mode BatchNorm's batch statistics mix the whole batch).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from config import ModelConfig

PACKAGE = "convlstm"

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy name for a `ModelConfig.precision`."""
    if precision not in _POLICIES:
        raise ValueError(f"precision must be one of {sorted(_POLICIES)}, got {precision!r}")
    return _POLICIES[precision]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpaceToDepth(layers.Layer):
    """Folds each `block x block` patch of every frame into channels.

    Args:
        block: patch size; H and W must be multiples of it.

    Shapes: (N, T, H, W, C) -> (N, T, H / block, W / block, C * block**2).
    """

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        b = self.block
        n, t = ops.shape(x)[0], ops.shape(x)[1]
        _, _, h, w, c = x.shape
        x = ops.reshape(x, (n, t, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 2, 4, 3, 5, 6))  # (n, t, h/b, w/b, b, b, c)
        return ops.reshape(x, (n, t, h // b, w // b, b * b * c))

    def compute_output_shape(self, s):
        b = self.block
        return (s[0], s[1], s[2] // b, s[3] // b, s[4] * b * b)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DepthToSpace(layers.Layer):
    """The inverse of `SpaceToDepth`.

    Shapes: (N, T, h, w, C * block**2) -> (N, T, h * block, w * block, C).
    """

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        b = self.block
        n, t = ops.shape(x)[0], ops.shape(x)[1]
        _, _, h, w, cb = x.shape
        c = cb // (b * b)
        x = ops.reshape(x, (n, t, h, w, b, b, c))
        x = ops.transpose(x, (0, 1, 2, 4, 3, 5, 6))  # (n, t, h, b, w, b, c)
        return ops.reshape(x, (n, t, h * b, w * b, c))

    def compute_output_shape(self, s):
        b = self.block
        return (s[0], s[1], s[2] * b, s[3] * b, s[4] // (b * b))

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CausalConv3D(layers.Conv3D):
    """A Conv3D whose time axis sees only the present and the past.

    Height and width are zero-padded as "same"; time is padded with
    `kernel_t - 1` zero frames on the past side, so output t reads inputs
    t - kernel_t + 1 .. t. With `causal=False` time is padded symmetrically,
    which equals `Conv3D(padding="same")` and lets output t read input t + 1:
    the leak that makes a next-frame predictor copy instead of forecast.

    Args:
        filters, kernel_size, ...: as `keras.layers.Conv3D` (padding is fixed).
        causal: pad time on the past side only (default) or symmetrically.

    Shapes: (N, T, H, W, C) -> (N, T, H, W, filters).
    """

    def __init__(self, filters, kernel_size, causal: bool = True, **kwargs):
        kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, padding="valid", **kwargs)
        self.causal = bool(causal)

    def _pads(self):
        kt, kh, kw = self.kernel_size
        time = (kt - 1, 0) if self.causal else ((kt - 1) // 2, kt // 2)
        return [(0, 0), time, ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)]

    def call(self, inputs):
        return super().call(ops.pad(inputs, self._pads()))

    def build(self, input_shape):
        super().build(input_shape)

    def compute_output_shape(self, s):
        return (*s[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "causal": self.causal}


def convlstm_block(x, filters: int, kernel_size: int, name: str, dtype="float32",
                   return_sequences: bool = True):
    """ConvLSTM2D -> BatchNorm -> ReLU: the block the predictor and the anomaly
    autoencoder share. Functional: takes and returns a symbolic tensor."""
    x = layers.ConvLSTM2D(filters, kernel_size, padding="same", return_sequences=return_sequences,
                          dtype=dtype, name=f"{name}_convlstm")(x)
    x = layers.BatchNormalization(dtype=dtype, name=f"{name}_bn")(x)
    return layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def build_model(config: ModelConfig | None = None, name: str = "convlstm_predictor") -> keras.Model:
    """The next-frame predictor.

    Default (`ModelConfig()`): ConvLSTM2D(64, 5x5) -> BN -> ReLU ->
    ConvLSTM2D(64, 3x3) -> BN -> ReLU -> ConvLSTM2D(64, 1x1) -> BN -> ReLU ->
    CausalConv3D(1, 3x3x3, sigmoid), all over the full sequence.
    With `patch_size = p > 1` the stack runs on p x p space-to-depth patches
    and the head predicts the p*p pixels of each patch.

    Args:
        config: a `ModelConfig`; None gives the reference model.

    Returns:
        keras.Model: (N, T, S, S, C) -> (N, T, S, S, C), T any.
    """
    cfg = config or ModelConfig()
    if len(cfg.filters) != len(cfg.kernel_sizes) or not cfg.filters:
        raise ValueError("filters and kernel_sizes must be non-empty and of equal length")
    p, s, c = cfg.patch_size, cfg.frame_size, cfg.channels
    if p < 1 or s % p:
        raise ValueError(f"patch_size {p} must divide frame_size {s}")
    policy = dtype_policy(cfg.precision)
    inputs = keras.Input((None, s, s, c), name="frames")
    x = SpaceToDepth(p, dtype=policy, name="space_to_depth")(inputs) if p > 1 else inputs
    for i, (f, k) in enumerate(zip(cfg.filters, cfg.kernel_sizes)):
        x = convlstm_block(x, f, k, name=f"block{i}", dtype=policy)
    x = CausalConv3D(c * p * p, tuple(cfg.head_kernel), causal=cfg.causal, activation="sigmoid",
                     dtype="float32", name="head")(x)
    if p > 1:
        x = DepthToSpace(p, dtype="float32", name="depth_to_space")(x)
    return keras.Model(inputs, x, name=name)


def inference_fn(net):
    """`net` in inference mode as one compiled graph for any batch and length
    (cached on the model; eager calls run the ConvLSTM loop op by op)."""
    fn = getattr(net, "_inference_fn", None)
    if fn is None:
        import tensorflow as tf

        fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
        net._inference_fn = fn
    return fn


def predict_frames(net, frames) -> np.ndarray:
    """Next-frame forecasts of float32 frames (N, T, H, W, C): output t forecasts frame t + 1."""
    return np.asarray(inference_fn(net)(np.asarray(frames, np.float32)), np.float32)


def rollout(net, context, horizon: int) -> np.ndarray:
    """Autoregressive forecast: context (N, C, H, W, 1) -> (N, horizon, H, W, 1).

    Each step runs the causal network over all frames so far and appends its
    last output; only frames <= t ever reach the forecast of t + 1.
    """
    seq = np.asarray(context, np.float32)
    preds = []
    for _ in range(horizon):
        nxt = predict_frames(net, seq)[:, -1:]
        preds.append(nxt)
        seq = np.concatenate([seq, nxt], axis=1)
    return np.concatenate(preds, axis=1)
