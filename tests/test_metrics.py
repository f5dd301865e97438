import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import metrics


def test_hand_computed_values():
    a = np.zeros((2, 4, 4, 1))
    b = np.zeros((2, 4, 4, 1))
    b[0, 0, 0, 0] = 1.0        # frame 0: one pixel off by 1 -> MSE 1/16
    b[1] = 0.5                  # frame 1: every pixel off by 0.5 -> MSE 0.25
    np.testing.assert_allclose(metrics.mse(a, b), [1 / 16, 0.25])
    np.testing.assert_allclose(metrics.mae(a, b), [1 / 16, 0.5])
    np.testing.assert_allclose(metrics.mse_frame(a, b), [1.0, 4.0])
    np.testing.assert_allclose(metrics.mae_frame(a, b), [1.0, 8.0])
    np.testing.assert_allclose(metrics.psnr(a, b), [10 * np.log10(16), 10 * np.log10(4)])
    assert metrics.psnr(a, a)[0] == metrics.PSNR_MAX_DB


def test_leading_shape_is_kept():
    a = np.random.rand(3, 5, 16, 16, 1)
    for name, m in metrics.METRICS.items():
        assert m.reference(a, a).shape == (3, 5), name
        assert tuple(m.tensor(a, a).shape) == (15,), name  # the Keras twin flattens the leading axes


def test_psnr_and_ssim_match_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.random((3, 32, 32, 1))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ours_ssim = metrics.ssim(a, b)
    ours_psnr = metrics.psnr(a, b)
    for i in range(3):
        ref = structural_similarity(a[i], b[i], data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
        assert ours_ssim[i] == pytest.approx(ref, abs=1e-6)
        assert ours_psnr[i] == pytest.approx(peak_signal_noise_ratio(a[i], b[i], data_range=1.0), abs=1e-9)
    assert metrics.ssim(a, a) == pytest.approx(np.ones(3))


def test_ssim_matches_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    a = rng.random((4, 20, 20, 1)).astype("float32")
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype("float32")
    np.testing.assert_allclose(metrics.ssim(a, b), tf.image.ssim(a, b, max_val=1.0).numpy(), atol=1e-5)


def test_keras_metric_classes_equal_numpy_functions():
    rng = np.random.default_rng(2)
    a = rng.random((2, 3, 16, 16, 1)).astype("float32")
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype("float32")
    for cls, fn in [(metrics.PSNR, metrics.psnr), (metrics.SSIM, metrics.ssim)]:
        m = cls()
        m.update_state(a, b)
        assert float(m.result()) == pytest.approx(float(np.mean(fn(a, b))), rel=1e-4)
        m2 = cls.from_config(m.get_config())
        assert m2.name == m.name


def test_pixel_accuracy_by_hand_and_keras_twin():
    a = np.zeros((1, 2, 2, 1), "float32")
    b = np.zeros((1, 2, 2, 1), "float32")
    a[0, 0, 0, 0], b[0, 0, 0, 0] = 0.8, 0.9    # both bright: right
    a[0, 0, 1, 0], b[0, 0, 1, 0] = 0.3, 0.0    # both dark (grey truth): right
    a[0, 1, 0, 0], b[0, 1, 0, 0] = 1.0, 0.2    # missed: wrong
    assert metrics.pixel_accuracy(a, b)[0] == pytest.approx(0.75)
    m = metrics.PixelAccuracy()
    m.update_state(a, b)
    assert float(m.result()) == pytest.approx(0.75)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="share a shape"):
        metrics.mse(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 5, 1)))


def test_band_matrix_filters_like_the_separable_reference():
    g = metrics.gaussian_window(11, 1.5)
    m = metrics.band_matrix(16)
    v = np.arange(16.0)
    assert m.shape == (6, 16)
    np.testing.assert_allclose(m @ v, [g @ v[i:i + 11] for i in range(6)])
    np.testing.assert_allclose(m.sum(axis=1), 1.0)


def test_frame_metrics_tensor_matches_numpy():
    rng = np.random.default_rng(3)
    a = rng.random((2, 3, 16, 20, 2)).astype("float32")
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype("float32")
    b[0, 0] = a[0, 0]  # an exact match: PSNR at the cap, SSIM 1
    ref = metrics.frame_metrics(a, b)
    got = metrics.frame_metrics_tensor(a, b)
    assert set(got) == set(ref)
    for k in ref:
        np.testing.assert_allclose(np.asarray(got[k]).reshape(2, 3), ref[k], rtol=2e-5, atol=2e-5, err_msg=k)
    assert np.asarray(got["ssim"])[0] == pytest.approx(1.0, abs=1e-6)
