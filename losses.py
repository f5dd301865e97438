"""Loss terms of the predictor: gradient difference, VGG16 perceptual, and the
serialisable `CompositeLoss` that weighs them with binary cross-entropy.

Every term is computed per frame on (N, T, H, W, C) tensors in [0, 1];
`CompositeLoss` averages frames to one value per sequence.
"""

from __future__ import annotations

import os

import keras
from keras import ops

from cli import UserError, first_line, is_fetch_failure

PACKAGE = "convlstm"
VGG_FLAG_HELP = ("pass --vgg-weights PATH (a local copy of "
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5) or "
                 "--perceptual-weight 0 to train without the perceptual term")


class PerceptualWeightsError(UserError, RuntimeError):
    """The VGG16 weights for the perceptual loss could not be loaded."""


@keras.saving.register_keras_serializable(package=PACKAGE)
def gradient_difference_loss(y_true, y_pred, alpha: float = 1.0):
    """Gradient difference loss (Mathieu et al. 2016), per frame.

    GDL = mean_ij | |y_i,j - y_i-1,j| - |p_i,j - p_i-1,j| |^alpha
        + mean_ij | |y_i,j - y_i,j-1| - |p_i,j - p_i,j-1| |^alpha
    (vertical and horizontal neighbours; each term averaged over its pixels
    and channels).

    Args:
        y_true, y_pred: (..., H, W, C).
        alpha: the exponent.

    Returns:
        (...,): one value per frame.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")

    def grads(x):
        return (ops.abs(x[..., 1:, :, :] - x[..., :-1, :, :]),
                ops.abs(x[..., :, 1:, :] - x[..., :, :-1, :]))

    tv, th = grads(y_true)
    pv, ph = grads(y_pred)
    axes = (-3, -2, -1)
    return (ops.mean(ops.abs(tv - pv) ** alpha, axis=axes)
            + ops.mean(ops.abs(th - ph) ** alpha, axis=axes))


def build_vgg_features(weights: str | None = "imagenet", layer: str = "block3_conv3") -> keras.Model:
    """A frozen VGG16 truncated at `layer`, for images (M, H, W, 3) in [0, 255] RGB.

    Args:
        weights: "imagenet" (downloaded and cached by Keras), a path to a local
            VGG16 notop weights file, or None (random init: tests only).
        layer: the layer whose activations are compared. The default,
            block3_conv3, keeps 1/4 resolution (16x16 for 64x64 frames): edges and
            strokes, not object categories, which is what digits need.

    Raises:
        PerceptualWeightsError naming the flags that fix it.
    """
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise PerceptualWeightsError(f"VGG16 weights file {weights!r} not found; {VGG_FLAG_HELP}")
    try:
        vgg = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as e:
        if not is_fetch_failure(e):  # a download failure or a bad file is one clear message; a bug is not
            raise
        raise PerceptualWeightsError(
            f"cannot load VGG16 weights {weights!r} for the perceptual loss ({first_line(e)}); "
            f"{VGG_FLAG_HELP}") from None
    features = keras.Model(vgg.input, vgg.get_layer(layer).output, name=f"vgg16_{layer}")
    features.trainable = False
    return features


def perceptual_loss(y_true, y_pred, features: keras.Model):
    """Relative squared distance of VGG16 features, per frame:

        sum (F(y) - F(p))^2 / (sum F(y)^2 + eps)      over the feature map.

    Frames (..., H, W, C) in [0, 1] are repeated to 3 channels (if C == 1),
    scaled to [0, 255] and given VGG16's ImageNet preprocessing (RGB -> BGR,
    mean subtraction) before `features`. Dividing by the true frame's feature
    energy makes the term scale-free (raw feature MSE is in the hundreds at
    block3_conv3 and depends on the layer), so its weight means the same thing
    whatever layer is chosen.

    Returns:
        (...,): one value per frame.
    """
    lead = ops.shape(y_true)[:-3]
    h, w, c = y_true.shape[-3:]

    def prep(x):
        x = ops.reshape(ops.cast(x, "float32"), (-1, h, w, c))
        if c == 1:
            x = ops.repeat(x, 3, axis=-1)
        return keras.applications.vgg16.preprocess_input(x * 255.0)

    ft = ops.cast(features(prep(y_true)), "float32")
    fp = ops.cast(features(prep(y_pred)), "float32")
    num = ops.sum(ops.square(ft - fp), axis=(1, 2, 3))
    den = ops.sum(ops.square(ft), axis=(1, 2, 3)) + 1e-6
    return ops.reshape(num / den, lead)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CompositeLoss(keras.losses.Loss):
    """bce_weight * BCE + perceptual_weight * VGG16 perceptual + gdl_weight * GDL
    + mse_weight * MSE + l1_weight * L1.

    Args:
        bce_weight, perceptual_weight, gdl_weight, mse_weight, l1_weight: the
            weights; a zero weight skips its term (and, for the perceptual term,
            never builds VGG16). MSE and L1 are per-pixel means, as BCE.
        perceptual_weights: "imagenet", a local weights path, or None (tests).
        perceptual_layer: the VGG16 layer compared.
        gdl_alpha: the GDL exponent.

    Call: y_true, y_pred (N, T, H, W, C) in [0, 1] -> (N,) before reduction.
    """

    def __init__(self, bce_weight: float = 1.0, perceptual_weight: float = 0.1,
                 gdl_weight: float = 1.0, perceptual_weights: str | None = "imagenet",
                 perceptual_layer: str = "block3_conv3", gdl_alpha: float = 1.0,
                 mse_weight: float = 0.0, l1_weight: float = 0.0, name: str = "composite_loss", reduction: str = "sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.bce_weight = float(bce_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.gdl_weight = float(gdl_weight)
        self.perceptual_weights = perceptual_weights
        self.perceptual_layer = perceptual_layer
        self.gdl_alpha = float(gdl_alpha)
        self.mse_weight = float(mse_weight)
        self.l1_weight = float(l1_weight)
        self.features = (build_vgg_features(perceptual_weights, perceptual_layer)
                         if self.perceptual_weight else None)

    def terms(self, y_true, y_pred) -> dict:
        """Each weighted term's unweighted value per frame: {name: (N, T)}."""
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        out = {}
        if self.bce_weight:
            bce = keras.losses.binary_crossentropy(y_true, y_pred)  # mean over C
            out["bce"] = ops.mean(bce, axis=(-2, -1))
        if self.perceptual_weight:
            out["perceptual"] = perceptual_loss(y_true, y_pred, self.features)
        if self.gdl_weight:
            out["gdl"] = gradient_difference_loss(y_true, y_pred, self.gdl_alpha)
        if self.mse_weight:
            out["mse"] = ops.mean(ops.square(y_true - y_pred), axis=(-3, -2, -1))
        if self.l1_weight:
            out["l1"] = ops.mean(ops.abs(y_true - y_pred), axis=(-3, -2, -1))
        return out

    def call(self, y_true, y_pred):
        weights = {"bce": self.bce_weight, "perceptual": self.perceptual_weight,
                   "gdl": self.gdl_weight, "mse": self.mse_weight, "l1": self.l1_weight}
        terms = self.terms(y_true, y_pred)
        if not terms:
            raise ValueError("CompositeLoss: every weight is zero")
        total = sum(weights[k] * v for k, v in terms.items())
        return ops.mean(total, axis=tuple(range(1, len(total.shape))))

    def get_config(self):
        return {**super().get_config(), "bce_weight": self.bce_weight,
                "perceptual_weight": self.perceptual_weight, "gdl_weight": self.gdl_weight,
                "perceptual_weights": self.perceptual_weights,
                "perceptual_layer": self.perceptual_layer, "gdl_alpha": self.gdl_alpha,
                "mse_weight": self.mse_weight, "l1_weight": self.l1_weight}
