"""The ConvLSTM predictor: building blocks and `build_model(config)`.

Contract: input (N, T, H, W, C) in [0, 1]; output the same shape; output t is the
forecast of frame t + 1 and depends on input frames <= t only (in inference
mode; in training mode BatchNorm's batch statistics mix the whole batch).
"""

from __future__ import annotations

import os
import zipfile

import keras
import numpy as np
from keras import layers, ops

from cli import InputError, UserError, first_line
from config import ModelConfig

PACKAGE = "convlstm"

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy name for a `ModelConfig.precision`."""
    if precision not in _POLICIES:
        raise InputError(f"precision must be one of {sorted(_POLICIES)}, got {precision!r}")
    return _POLICIES[precision]


class _PatchLayer(layers.Layer):
    """A layer parametrised by one patch size, `block` (saved in its config)."""

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpaceToDepth(_PatchLayer):
    """Folds each `block x block` patch of every frame into channels.

    Args:
        block: patch size; H and W must be multiples of it.

    Shapes: (N, T, H, W, C) -> (N, T, H / block, W / block, C * block**2).
    """

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


@keras.saving.register_keras_serializable(package=PACKAGE)
class DepthToSpace(_PatchLayer):
    """The inverse of `SpaceToDepth`.

    Shapes: (N, T, h, w, C * block**2) -> (N, T, h * block, w * block, C).
    """

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

    def last_output(self, window):
        """The output at the last time step of `window` (N, kernel_t, H, W, C), the
        layer's last kernel_t inputs: what `call` gives at that step, computed once
        instead of for every step of the window (used by the stepwise rollout)."""
        pads = self._pads()
        if self.causal:
            window = ops.cast(window, self.compute_dtype)
            return super().call(ops.pad(window, [pads[0], (0, 0), *pads[2:]]))
        return self.call(window)[:, -1:]

    def compute_output_shape(self, s):
        return (*s[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "causal": self.causal}


def patched_input(frame_size: int, channels: int, patch_size: int, precision: str, name: str) -> tuple:
    """The input of a video network, (N, T, S, S, C), and its frames folded into patch_size^2 patches.

    Returns:
        (the keras.Input, the tensor after `SpaceToDepth` (the input itself when patch_size is 1), the
        dtype policy of `precision`).
    """
    if patch_size < 1 or frame_size % patch_size:
        raise InputError(f"patch_size {patch_size} must divide frame_size {frame_size}")
    policy = dtype_policy(precision)
    inp = keras.Input((None, frame_size, frame_size, channels), name=name)
    x = SpaceToDepth(patch_size, dtype=policy, name="space_to_depth")(inp) if patch_size > 1 else inp
    return inp, x, policy


def convlstm_block(x, filters: int, kernel_size: int, name: str, dtype="float32",
                   return_sequences: bool = True, bn_momentum: float = 0.99):
    """ConvLSTM2D -> BatchNorm -> ReLU: the block the predictor and the anomaly
    autoencoder share. Functional: takes and returns a symbolic tensor.

    `bn_momentum` is BatchNorm's moving-average momentum (Keras's 0.99 by
    default); short trainings want less, or the inference-mode statistics still
    carry their initial values when training stops."""
    x = layers.ConvLSTM2D(filters, kernel_size, padding="same", return_sequences=return_sequences,
                          dtype=dtype, name=f"{name}_convlstm")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, dtype=dtype, name=f"{name}_bn")(x)
    return layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def build_model(config: ModelConfig | None = None, name: str = "convlstm_predictor") -> keras.Model:
    """The next-frame predictor.

    Default (`ModelConfig()`): ConvLSTM2D(64, 5x5) -> BN -> ReLU ->
    ConvLSTM2D(64, 3x3) -> BN -> ReLU -> ConvLSTM2D(64, 1x1) -> BN -> ReLU ->
    CausalConv3D(1, 3x3x3, sigmoid), all over the full sequence.
    With `patch_size = p > 1` the stack runs on p x p space-to-depth patches
    and the head predicts the p*p pixels of each patch. With `input_skip` the
    head reads the last block's output concatenated with the (patched) input
    frames.

    Args:
        config: a `ModelConfig`; None gives the reference model.

    Returns:
        keras.Model: (N, T, S, S, C) -> (N, T, S, S, C), T any.
    """
    cfg = config or ModelConfig()
    if len(cfg.filters) != len(cfg.kernel_sizes) or not cfg.filters:
        raise InputError("filters and kernel_sizes must be non-empty and of equal length")
    p, c = cfg.patch_size, cfg.channels
    inputs, x, policy = patched_input(cfg.frame_size, c, p, cfg.precision, "frames")
    frames_in = x
    for i, (f, k) in enumerate(zip(cfg.filters, cfg.kernel_sizes)):
        x = convlstm_block(x, f, k, name=f"block{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    if cfg.input_skip:
        x = layers.Concatenate(dtype=policy, name="input_skip")([x, frames_in])
    x = CausalConv3D(c * p * p, tuple(cfg.head_kernel), causal=cfg.causal, activation="sigmoid",
                     dtype="float32", name="head")(x)
    if p > 1:
        x = DepthToSpace(p, dtype="float32", name="depth_to_space")(x)
    return keras.Model(inputs, x, name=name)


def inference_fn(net):
    """`net` in inference mode as one compiled graph for any batch and length
    (cached on the model; eager calls run the ConvLSTM loop op by op)."""
    fn = getattr(net, "_inference_fn", None)
    if fn is None and keras.backend.backend() != "tensorflow":
        fn = net._inference_fn = net.predict_on_batch  # compiled by Keras per input shape
    if fn is None:
        import tensorflow as tf

        fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
        net._inference_fn = fn
    return fn


def predict_frames(net, frames) -> np.ndarray:
    """Next-frame forecasts of float32 frames (N, T, H, W, C): output t forecasts frame t + 1."""
    return np.asarray(inference_fn(net)(np.asarray(frames, np.float32)), np.float32)


def rollout_naive(net, context, horizon: int) -> np.ndarray:
    """Autoregressive forecast by re-running the whole sequence each step (O(T^2)).

    Works for any causal predictor; `rollout` is the O(T) version for this
    project's networks and is tested against this one. The sequence is a fixed
    buffer of context + horizon - 1 frames whose not-yet-forecast frames are
    zeros: a causal network's output t never reads them, and one input shape
    means one compiled graph (on JAX, `predict_on_batch` compiles per shape).
    """
    seq = np.asarray(context, np.float32)
    c = seq.shape[1]
    seq = np.concatenate([seq, np.zeros((len(seq), horizon - 1, *seq.shape[2:]), np.float32)], axis=1)
    for k in range(horizon - 1):
        seq[:, c + k] = predict_frames(net, seq)[:, c + k - 1]
    last = predict_frames(net, seq)[:, -1:]
    return np.concatenate([seq[:, c:], last], axis=1)


class StepwiseUnsupported(Exception):
    """`_stepper` cannot run this network one frame at a time; callers use the re-run path."""


def _stepwise_layers(net) -> dict:
    """The layers of a `build_model` network by role: "blocks" [(ConvLSTM2D, BN,
    ReLU)], "head", and "s2d", "d2s", "skip" (or None). StepwiseUnsupported for a
    network with any other layer, which the stepwise pass would silently skip."""
    names = {layer.name for layer in net.layers}
    blocks, i = [], 0
    while f"block{i}_convlstm" in names:
        blocks.append(tuple(net.get_layer(f"block{i}_{part}") for part in ("convlstm", "bn", "relu")))
        i += 1
    if "head" not in names or not blocks:
        raise StepwiseUnsupported("no ConvLSTM blocks and head")
    optional = {"s2d": "space_to_depth", "d2s": "depth_to_space", "skip": "input_skip"}
    known = {"frames", "head", *optional.values(), *(layer.name for block in blocks for layer in block)}
    unknown = [layer.name for layer in net.layers if layer.name not in known]
    if unknown:
        raise StepwiseUnsupported(f"the stepwise pass does not handle layers {unknown}")
    return {"blocks": blocks, "head": net.get_layer("head"),
            **{k: net.get_layer(v) if v in names else None for k, v in optional.items()}}


def _step_fn(parts: dict):
    """One frame through the network: (frame (N, H, W, ch), ConvLSTM states, the
    head's input buffer) -> (forecast (N, H, W, ch) float32, new states, new buffer)."""
    import tensorflow as tf

    blocks, head, s2d, d2s, skip = (parts[k] for k in ("blocks", "head", "s2d", "d2s", "skip"))

    def step(frame, states, buf):
        x = frame[:, None]
        if s2d is not None:
            x = s2d(x)
        x = x[:, 0]
        x_in = x
        new_states = []
        for (lstm, bn, relu), (h, c) in zip(blocks, states):
            h, (h, c) = lstm.cell(x, [h, c], training=False)
            new_states.append((h, c))
            x = relu(bn(h[:, None], training=False))[:, 0]  # BN was built for 5-D input
        if skip is not None:
            x = tf.concat([x, tf.cast(x_in, x.dtype)], axis=-1)
        buf = tf.concat([buf[:, 1:], tf.cast(x, buf.dtype)[:, None]], axis=1)
        y = head.last_output(buf)
        if d2s is not None:
            y = d2s(y)
        return tf.cast(y[:, 0], tf.float32), new_states, buf

    return step


def _stepper(net):
    """A compiled function that runs `net` one frame at a time with explicit
    ConvLSTM states and a buffer of the head's last `kernel_t` inputs:
    (frames (N, T, H, W, ch), context, horizon) -> (next-frame forecasts
    (N, T-1, ...), rollout (N, horizon, ...)); see `forecast`."""
    fn = getattr(net, "_rollout_fn", None)
    if fn is not None:
        return fn
    if keras.backend.backend() != "tensorflow":
        raise StepwiseUnsupported("the stepwise pass is written in TensorFlow")
    import tensorflow as tf

    parts = _stepwise_layers(net)
    blocks, s2d, skip = parts["blocks"], parts["s2d"], parts["skip"]
    kt = parts["head"].kernel_size[0]
    step = _step_fn(parts)

    @tf.function(reduce_retracing=True)
    def run(frames, context, horizon):
        """True frames 0..T-2 in, one at a time: their next-frame forecasts
        (N, T-1, ...); and, branching off the state after true frame `context`-1,
        `horizon` autoregressive forecasts (N, horizon, ...)."""
        n = tf.shape(frames)[0]
        n_true = tf.shape(frames)[1] - 1
        x0 = frames[:, :1]
        if s2d is not None:
            x0 = s2d(x0)
        gh, gw = x0.shape[2], x0.shape[3]
        states = []
        for lstm, _, _ in blocks:
            z = tf.zeros(tf.stack([n, gh, gw, lstm.filters]), lstm.compute_dtype)
            states.append((z, z))
        width = blocks[-1][0].filters + (x0.shape[-1] if skip is not None else 0)
        buf = tf.zeros(tf.stack([n, kt, gh, gw, width]), blocks[-1][2].compute_dtype)
        nf = tf.TensorArray(tf.float32, size=n_true)
        y, states, buf = step(frames[:, 0], states, buf)
        nf = nf.write(0, y)
        for t in tf.range(1, context):
            y, states, buf = step(frames[:, t], states, buf)
            nf = nf.write(t, y)
        y_ro, states_ro, buf_ro = y, states, buf
        for t in tf.range(context, n_true):
            y, states, buf = step(frames[:, t], states, buf)
            nf = nf.write(t, y)
        ro = tf.TensorArray(tf.float32, size=horizon)
        for k in tf.range(horizon):
            ro = ro.write(k, y_ro)
            if k + 1 < horizon:
                y_ro, states_ro, buf_ro = step(y_ro, states_ro, buf_ro)
        nf = tf.transpose(nf.stack(), (1, 0, 2, 3, 4))
        return nf, tf.transpose(ro.stack(), (1, 0, 2, 3, 4))

    net._rollout_fn = run
    return run


def rollout(net, context, horizon: int) -> np.ndarray:
    """Autoregressive forecast: context (N, C, H, W, ch) -> (N, horizon, H, W, ch).

    The network runs one frame at a time (its ConvLSTM states carried over),
    so a rollout costs C + horizon frames, not the O(T^2) of re-running the
    sequence; each forecast is fed back as the next input. Only frames <= t
    ever reach the forecast of t + 1. Networks not built by `build_model` fall
    back to `rollout_naive`.
    """
    context = np.asarray(context, np.float32)
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    try:
        run = _stepper(net)
    except StepwiseUnsupported:
        return rollout_naive(net, context, horizon)
    # one extra (zero) frame: the stepper consumes frames 0..T-2 as true inputs
    frames = np.concatenate([context, np.zeros_like(context[:, :1])], axis=1)
    return np.asarray(run(frames, len(context[0]), horizon)[1], np.float32)


def forecast(net, frames, context: int, horizon: int):
    """Both evaluation protocols in one stepwise pass over float32 frames (N, T, H, W, C):

    Returns:
        (next_frame, rollout): next_frame (N, T-1, H, W, C), output t forecasts
        frame t+1 from true frames 0..t (as `predict_frames`); rollout
        (N, horizon, H, W, C), forecasts of frames context..context+horizon-1
        from true frames 0..context-1 only (as `rollout`). The rollout
        branches off the next-frame pass after frame context-1, so both cost
        T-1 + horizon-1 frame steps instead of T-1 + context + horizon-1.
    """
    frames = np.asarray(frames, np.float32)
    if not 1 <= context <= frames.shape[1] - 1 or horizon < 1:
        raise ValueError(f"need 1 <= context <= T-1 (T={frames.shape[1]}) and horizon >= 1")
    try:
        run = _stepper(net)
    except StepwiseUnsupported:
        return predict_frames(net, frames[:, :-1]), rollout_naive(net, frames[:, :context], horizon)
    nf, ro = run(frames, context, horizon)
    return np.asarray(nf, np.float32), np.asarray(ro, np.float32)


# What keras.saving.load_model raises for a file that is not a readable model:
# a zip without config.json (KeyError), a broken config.json (ValueError), a
# class it cannot rebuild (TypeError: Keras wraps every deserialisation failure
# in one), a damaged weights file inside (OSError, EOFError), a bad zip.
BAD_MODEL_FILE = (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile)


def load_model_file(path: str):
    """`keras.saving.load_model(path)` in safe mode, without compiling, for a file
    that exists. A `.keras` file that is not a zip archive (truncated, or another
    kind of file) and a model Keras cannot rebuild are an InputError saying so;
    anything else (a bug) keeps its traceback."""
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise InputError(f"{path}: the file exists but is not a readable Keras archive "
                         f"(not a zip file: truncated or another kind of file; {os.path.getsize(path)} bytes)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except BAD_MODEL_FILE as e:
        raise InputError(f"{path}: cannot load it as a Keras model ({first_line(e)})") from None


def load_predictor(path: str):
    """A saved predictor, without its training configuration; never runs code from the file."""
    import losses  # noqa: F401  (registers the project's serialisable objects)
    import metrics  # noqa: F401

    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; train one with train.py or pass --checkpoint")
    net = load_model_file(path)
    if not is_video_predictor(net):
        raise UserError(f"{path}: not a video predictor (a network of (N, T, S, S, C) frames to frames "
                        "of the same shape, as train.py saves)")
    return net


def is_video_predictor(net) -> bool:
    """Whether `net` maps (N, T, S, S, C) frames to frames of the same shape."""
    try:
        shape_in, shape_out = tuple(net.input_shape), tuple(net.output_shape)
    except (AttributeError, ValueError, TypeError):  # never built, or several inputs/outputs
        return False
    return len(shape_in) == 5 and shape_in[2] is not None and shape_in[2] == shape_in[3] and \
        shape_in[2:] == shape_out[2:]
