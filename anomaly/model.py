"""The ConvLSTM autoencoder, built from the predictor's blocks (`model.convlstm_block`,
`SpaceToDepth`, `DepthToSpace`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from model import DepthToSpace, SpaceToDepth, convlstm_block, dtype_policy


@dataclass
class AEConfig:
    """encoder / decoder: ConvLSTM filters per layer (the output layer maps the
    last decoder layer back to the 3 feature channels); kernel: ConvLSTM kernel;
    patch: space-to-depth factor; window: frames per window; image_size: S."""

    encoder: tuple = (32, 64, 32)
    decoder: tuple = (64, 32)
    kernel: int = 3
    patch: int = 2
    window: int = 16
    image_size: int = 64
    channels: int = 3
    precision: str = "float32"
    bn_momentum: float = 0.9  # a few hundred steps of training: moving stats must keep up

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["encoder"], d["decoder"] = tuple(d["encoder"]), tuple(d["decoder"])
        return cls(**d)


AE_PRESETS = {
    # the default widths: encoder 3->32->64->32, decoder 32->64->32->3
    "strong": AEConfig(),
    # real time on a CPU: narrower layers on 4x4 patches
    "light": AEConfig(encoder=(16, 32, 16), decoder=(32, 16), patch=4),
}


def build_autoencoder(cfg: AEConfig | None = None) -> keras.Model:
    """(N, T, S, S, 3) normalised features -> their reconstruction, same shape."""
    cfg = cfg or AEConfig()
    p, s, c = cfg.patch, cfg.image_size, cfg.channels
    if p < 1 or s % p:
        raise ValueError(f"patch {p} must divide image_size {s}")
    policy = dtype_policy(cfg.precision)
    inp = keras.Input((None, s, s, c), name="features")
    x = SpaceToDepth(p, dtype=policy, name="space_to_depth")(inp) if p > 1 else inp
    for i, f in enumerate(cfg.encoder):
        x = convlstm_block(x, f, cfg.kernel, name=f"enc{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    for i, f in enumerate(cfg.decoder):
        x = convlstm_block(x, f, cfg.kernel, name=f"dec{i}", dtype=policy, bn_momentum=cfg.bn_momentum)
    x = layers.Conv3D(c * p * p, (1, 3, 3), padding="same", dtype="float32", name="reconstruction")(x)
    if p > 1:
        x = DepthToSpace(p, dtype="float32", name="depth_to_space")(x)
    return keras.Model(inp, x, name="convlstm_autoencoder")
