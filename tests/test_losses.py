import keras
import numpy as np
import pytest

import losses
from losses import CompositeLoss, gradient_difference_loss


def test_gdl_hand_computed():
    t = np.zeros((1, 2, 3, 1), "float32")      # (N=1 frame, H=2, W=3, C=1)
    t[0, 0] = [[0], [1], [0]]                   # row 0: 0 1 0 ; row 1: 0 0 0
    p = np.zeros_like(t)
    # vertical |dt|: row1-row0 = [0,1,0] -> mean over 1x3 = 1/3; p has none -> 1/3
    # horizontal |dt|: row 0 [1,1], row 1 [0,0] -> mean over 2x2 = 0.5; p none -> 0.5
    assert float(gradient_difference_loss(t, p)[0]) == pytest.approx(1 / 3 + 0.5)
    # alpha = 2 on a difference of 0.5 everywhere it differs
    assert float(gradient_difference_loss(t * 0.5, p, alpha=2.0)[0]) == pytest.approx(0.25 / 3 + 0.125)
    assert float(gradient_difference_loss(t, t)[0]) == 0.0
    # a constant shift has the same gradients: no penalty
    assert float(gradient_difference_loss(t, t + 0.3)[0]) == pytest.approx(0.0, abs=1e-7)


def test_bce_term_hand_computed():
    y = np.zeros((1, 1, 2, 2, 1), "float32")
    p = np.full_like(y, 0.25)
    loss = CompositeLoss(bce_weight=1.0, perceptual_weight=0.0, gdl_weight=0.0)
    assert float(loss(y, p)) == pytest.approx(-np.log(0.75), rel=1e-5)


def test_terms_add_with_their_weights():
    rng = np.random.default_rng(0)
    y = rng.random((2, 3, 8, 8, 1)).astype("float32")
    p = rng.random((2, 3, 8, 8, 1)).astype("float32")
    bce = CompositeLoss(1.0, 0.0, 0.0)(y, p)
    gdl = CompositeLoss(0.0, 0.0, 1.0)(y, p)
    both = CompositeLoss(2.0, 0.0, 3.0)(y, p)
    assert float(both) == pytest.approx(2 * float(bce) + 3 * float(gdl), rel=1e-5)


def test_perceptual_term_with_random_vgg():
    feats = losses.build_vgg_features(weights=None)
    rng = np.random.default_rng(0)
    y = rng.random((2, 2, 16, 16, 1)).astype("float32")
    p = rng.random((2, 2, 16, 16, 1)).astype("float32")
    d = losses.perceptual_loss(y, p, feats)
    assert d.shape == (2, 2)
    assert np.all(np.asarray(d) > 0)
    np.testing.assert_allclose(np.asarray(losses.perceptual_loss(y, y, feats)), 0.0, atol=1e-6)
    # per frame: changing only frame (1, 0) changes only that entry
    p2 = p.copy()
    p2[1, 0] = y[1, 0]
    d2 = np.asarray(losses.perceptual_loss(y, p2, feats))
    assert d2[1, 0] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(d2[0], np.asarray(d)[0], rtol=1e-5)
    # by hand: relative squared feature distance
    ft = np.asarray(feats(losses.keras.applications.vgg16.preprocess_input(np.repeat(y[0, 1], 3, -1)[None] * 255.0)))
    fp = np.asarray(feats(losses.keras.applications.vgg16.preprocess_input(np.repeat(p[0, 1], 3, -1)[None] * 255.0)))
    assert float(d[0, 1]) == pytest.approx(np.sum((ft - fp) ** 2) / (np.sum(ft**2) + 1e-6), rel=1e-4)
    loss = CompositeLoss(0.0, 1.0, 0.0, perceptual_weights=None)
    own = losses.perceptual_loss(y, p, loss.features)
    assert float(loss(y, p)) == pytest.approx(float(np.mean(own)), rel=1e-5)


def test_missing_imagenet_weights_name_the_flags(monkeypatch):
    def offline(*a, **k):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(losses.PerceptualWeightsError, match="--vgg-weights.*--perceptual-weight 0"):
        CompositeLoss(perceptual_weight=0.1, perceptual_weights="imagenet")
    with pytest.raises(losses.PerceptualWeightsError, match="not found"):
        CompositeLoss(perceptual_weight=0.1, perceptual_weights="/no/such/vgg.h5")
    CompositeLoss(perceptual_weight=0.0)  # no perceptual term: nothing to load


def test_local_weights_file_is_used(tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = str(tmp_path / "vgg16_notop.weights.h5")
    vgg.save_weights(path)
    feats = losses.build_vgg_features(weights=path)
    np.testing.assert_array_equal(feats.get_layer("block1_conv1").get_weights()[0],
                                  vgg.get_layer("block1_conv1").get_weights()[0])


def test_serialization_round_trip():
    loss = CompositeLoss(0.5, 0.0, 2.0, perceptual_weights=None, gdl_alpha=2.0)
    cfg = loss.get_config()
    again = CompositeLoss.from_config(cfg)
    assert again.get_config() == cfg
    ser = keras.saving.serialize_keras_object(loss)
    back = keras.saving.deserialize_keras_object(ser)
    assert isinstance(back, CompositeLoss) and back.gdl_alpha == 2.0
    y = np.random.rand(1, 2, 8, 8, 1).astype("float32")
    p = np.random.rand(1, 2, 8, 8, 1).astype("float32")
    assert float(back(y, p)) == pytest.approx(float(loss(y, p)))


def test_compiled_model_round_trip(tmp_path):
    """A model compiled with the loss and metrics reloads without custom_objects."""
    import metrics
    from config import ModelConfig
    from model import build_model

    m = build_model(ModelConfig(filters=(2, 2, 2), frame_size=16))
    m.compile(optimizer="adam", loss=CompositeLoss(1.0, 0.0, 1.0), metrics=[metrics.PSNR(), metrics.SSIM()])
    x = np.random.rand(2, 2, 16, 16, 1).astype("float32")
    m.fit(x, x, epochs=1, verbose=0)
    path = str(tmp_path / "c.keras")
    m.save(path)
    m2 = keras.saving.load_model(path)
    assert isinstance(m2.loss, CompositeLoss) and m2.loss.gdl_weight == 1.0
    np.testing.assert_allclose(np.asarray(m2(x)), np.asarray(m(x)), rtol=1e-6)


def test_mse_and_l1_terms_hand_computed():
    y = np.zeros((1, 1, 2, 2, 1), "float32")
    p = np.array([0.5, 0.1, 0.0, 0.2], "float32").reshape(y.shape)
    mse = CompositeLoss(0.0, 0.0, 0.0, mse_weight=1.0)(y, p)
    l1 = CompositeLoss(0.0, 0.0, 0.0, l1_weight=1.0)(y, p)
    assert float(mse) == pytest.approx((0.25 + 0.01 + 0.04) / 4, rel=1e-5)
    assert float(l1) == pytest.approx(0.8 / 4, rel=1e-5)
    both = CompositeLoss(0.0, 0.0, 0.0, mse_weight=2.0, l1_weight=3.0)(y, p)
    assert float(both) == pytest.approx(2 * 0.075 + 3 * 0.2, rel=1e-5)
    cfg = CompositeLoss(0.0, 0.0, 0.0, mse_weight=2.0, l1_weight=3.0).get_config()
    assert cfg["mse_weight"] == 2.0 and cfg["l1_weight"] == 3.0
