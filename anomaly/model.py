"""The ConvLSTM autoencoder, built from the predictor's blocks (`model.convlstm_block`,
`SpaceToDepth`, `DepthToSpace`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers, ops

from model import DepthToSpace, SpaceToDepth, convlstm_block, dtype_policy


@dataclass
class AEConfig:
    """encoder / decoder: ConvLSTM filters per layer (the output layer maps the
    last decoder layer back to the 3 feature channels); kernel: ConvLSTM kernel;
    patch: space-to-depth factor; window: frames per window; image_size: S;
    coords: the input also carries two coordinate channels (x and y in [-1, 1]),
    so the convolutions, translation-equivariant otherwise, can learn what is
    normal *where* (which way a lane walks)."""

    encoder: tuple = (32, 64, 32)
    decoder: tuple = (64, 32)
    kernel: int = 3
    patch: int = 2
    window: int = 16
    image_size: int = 64
    channels: int = 3
    precision: str = "float32"
    bn_momentum: float = 0.9  # a few hundred steps of training: moving stats must keep up
    coords: bool = False

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["encoder"], d["decoder"] = tuple(d["encoder"]), tuple(d["decoder"])
        return cls(**d)


@keras.saving.register_keras_serializable(package="convlstm")
class CoordChannels(layers.Layer):
    """Appends the pixel's x and y, each in [-1, 1], as two channels.

    Shapes: (N, T, H, W, C) -> (N, T, H, W, C + 2)."""

    def call(self, x):
        n, t = ops.shape(x)[0], ops.shape(x)[1]
        h, w = x.shape[2], x.shape[3]
        yy, xx = ops.meshgrid(ops.linspace(-1.0, 1.0, h), ops.linspace(-1.0, 1.0, w), indexing="ij")
        grid = ops.cast(ops.stack([xx, yy], axis=-1), x.dtype)  # (H, W, 2)
        grid = ops.broadcast_to(grid[None, None], (n, t, h, w, 2))
        return ops.concatenate([x, grid], axis=-1)

    def compute_output_shape(self, s):
        return (*s[:-1], s[-1] + 2)


AE_PRESETS = {
    # the default widths: encoder 3->32->64->32, decoder 32->64->32->3
    "strong": AEConfig(),
    # real time on a CPU: narrower layers on 4x4 patches
    "light": AEConfig(encoder=(16, 32, 16), decoder=(32, 16), patch=4),
}


def build_autoencoder(cfg: AEConfig | None = None) -> keras.Model:
    """(N, T, S, S, C) normalised features -> their reconstruction, same shape."""
    cfg = cfg or AEConfig()
    p, s, c = cfg.patch, cfg.image_size, cfg.channels
    if p < 1 or s % p:
        raise ValueError(f"patch {p} must divide image_size {s}")
    policy = dtype_policy(cfg.precision)
    inp = keras.Input((None, s, s, c), name="features")
    x = CoordChannels(name="coords")(inp) if cfg.coords else inp
    x = SpaceToDepth(p, dtype=policy, name="space_to_depth")(x) if p > 1 else x
    for i, f in enumerate(cfg.encoder):
        x = convlstm_block(x, f, cfg.kernel, name=f"enc{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    for i, f in enumerate(cfg.decoder):
        x = convlstm_block(x, f, cfg.kernel, name=f"dec{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    x = layers.Conv3D(c * p * p, (1, 3, 3), padding="same", dtype="float32", name="reconstruction")(x)
    if p > 1:
        x = DepthToSpace(p, dtype="float32", name="depth_to_space")(x)
    return keras.Model(inp, x, name="convlstm_autoencoder")
