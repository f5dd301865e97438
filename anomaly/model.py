"""The detector's networks: the ConvLSTM autoencoder, built from the predictor's
blocks (`model.patched_input`, `convlstm_block`, `DepthToSpace`), and the motion
model (`anomaly.motion`: where people are -> how they move there)."""

from __future__ import annotations

import keras
from keras import layers, ops

from anomaly.config import AEConfig, MotionConfig
from cli import InputError
from model import DepthToSpace, convlstm_block, patched_input


@keras.saving.register_keras_serializable(package="convlstm")
class CoordChannels(layers.Layer):
    """Appends the pixel's x and y, each in [-1, 1], as two channels.

    Shapes: (..., H, W, C) -> (..., H, W, C + 2), e.g. (N, T, H, W, C) or (N, H, W, C)."""

    def call(self, x):
        lead = tuple(ops.shape(x)[:-3])
        h, w = x.shape[-3], x.shape[-2]
        yy, xx = ops.meshgrid(ops.linspace(-1.0, 1.0, h), ops.linspace(-1.0, 1.0, w), indexing="ij")
        grid = ops.cast(ops.stack([xx, yy], axis=-1), x.dtype)  # (H, W, 2)
        grid = ops.broadcast_to(grid, (*lead, h, w, 2))
        return ops.concatenate([x, grid], axis=-1)

    def compute_output_shape(self, s):
        return (*s[:-1], s[-1] + 2)


def fit_callbacks(patience: int, extra=()) -> list:
    """The callbacks both detector networks train with: halve the learning rate
    on a validation plateau, stop early (best weights back), stop on NaN; then `extra`."""
    return [keras.callbacks.ReduceLROnPlateau(patience=max(1, patience // 2), factor=0.5),
            keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True),
            keras.callbacks.TerminateOnNaN(), *extra]


def build_autoencoder(cfg: AEConfig | None = None) -> keras.Model:
    """(N, T, S, S, C) normalised features -> their reconstruction, same shape."""
    cfg = cfg or AEConfig()
    p, c = cfg.patch_size, cfg.channels
    inp, x, policy = patched_input(cfg.frame_size, c, p, cfg.precision, "features")
    for i, f in enumerate(cfg.encoder):
        x = convlstm_block(x, f, cfg.kernel, name=f"enc{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    for i, f in enumerate(cfg.decoder):
        x = convlstm_block(x, f, cfg.kernel, name=f"dec{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    x = layers.Conv3D(c * p * p, (1, 3, 3), padding="same", dtype="float32", name="reconstruction")(x)
    if p > 1:
        x = DepthToSpace(p, dtype="float32", name="depth_to_space")(x)
    return keras.Model(inp, x, name="convlstm_autoencoder")


def build_motion_model(cfg: MotionConfig | None = None) -> keras.Model:
    """(N, S, S, 1) normalised density -> {"logits": (N, n, n, bins), "speed": (N, n, n)}:
    per cell of the detector's grid, the motion-bin logits and the mean flow
    speed / `speed_scale`. Sees one frame, never the flow."""
    cfg = cfg or MotionConfig()
    s, b, n, c = cfg.frame_size, cfg.border, cfg.grid, cfg.cell
    if n < 1:
        raise InputError(f"border {b} leaves no cell of {c} pixels in a {s}x{s} frame")
    inp = keras.Input((s, s, 1), name="density")
    end = s - b - n * c  # the grid's cells start at the border and may leave a margin
    x = layers.Cropping2D(((b, end), (b, end)), name="grid_area")(inp)
    x = CoordChannels(name="coords")(x)
    for i, f in enumerate(cfg.widths):
        x = layers.Conv2D(f, cfg.kernel, padding="same", activation="relu", name=f"pixel{i}")(x)
    x = layers.AveragePooling2D(c, name="cells")(x)
    for i, f in enumerate(cfg.cell_widths):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"cell{i}")(x)
    logits = layers.Conv2D(cfg.bins, 1, dtype="float32", name="logits")(x)
    speed = layers.Reshape((n, n), name="speed")(layers.Conv2D(1, 1, dtype="float32", name="speed_head")(x))
    return keras.Model(inp, {"logits": logits, "speed": speed}, name="motion_model")
