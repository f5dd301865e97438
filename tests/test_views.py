"""Test-time averaging over the frame's symmetries (views.py), and its flags."""

import json
import os

import numpy as np
import pytest

from cli import InputError
from views import VIEWS, over_views, to_view


def _frames(n=2, t=3, s=5, seed=0):
    return np.random.default_rng(seed).random((n, t, s, s, 1)).astype(np.float32)


def test_every_view_maps_back_and_the_eight_differ():
    x = _frames()
    seen = set()
    for v in VIEWS["dihedral"]:
        y = to_view(x, v)
        np.testing.assert_array_equal(to_view(y, v, inverse=True), x)
        seen.add(y.tobytes())
    assert len(seen) == 8
    # hand-checked: transposing then flipping the rows turns a frame a quarter counter-clockwise
    a = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2, 1)  # [[0, 1], [2, 3]]
    np.testing.assert_array_equal(to_view(a, (True, True, False))[0, 0, ..., 0], [[1, 3], [0, 2]])


@pytest.mark.parametrize("views", sorted(VIEWS))
def test_a_forecast_that_respects_the_symmetries_is_unchanged(views):
    x = _frames()
    np.testing.assert_allclose(over_views(lambda f: f * 0.5, x, views), x * 0.5, rtol=1e-6)


def test_the_mean_by_hand():
    """fn blanks column 0 of every frame. Under the transposed view that column is
    row 0 of the frame, so "transpose" halves row 0 and column 0 and blanks their
    corner; "flips" halves the first and the last column."""
    def blank_first_column(f):
        f = f.copy()
        f[:, :, :, 0] = 0
        return f

    x = np.ones((1, 1, 4, 4, 1), np.float32)
    t = over_views(blank_first_column, x, "transpose")[0, 0, ..., 0]
    want = np.ones((4, 4))
    want[0, :] = want[:, 0] = 0.5
    want[0, 0] = 0
    np.testing.assert_allclose(t, want)
    f = over_views(blank_first_column, x, "flips")[0, 0, ..., 0]
    want = np.ones((4, 4))
    want[:, [0, -1]] = 0.5
    np.testing.assert_allclose(f, want)


def test_tuples_are_averaged_apart_and_unknown_views_refused():
    x = _frames()
    a, b = over_views(lambda f: (f, f[:, :1] + 1), x, "dihedral")
    np.testing.assert_allclose(a, x, rtol=1e-6)
    np.testing.assert_allclose(b, x[:, :1] + 1, rtol=1e-6)
    with pytest.raises(InputError, match="views must be one of .*got 'mirror'"):
        over_views(lambda f: f, x, "mirror")


def test_the_averaged_forecast_reads_only_past_frames():
    from config import ModelConfig
    from model import build_model, forecast

    net = build_model(ModelConfig(filters=(4, 4, 4), frame_size=8))
    x = _frames(t=6, s=8)
    x2 = x.copy()
    x2[:, 3:] = np.random.default_rng(1).random(x2[:, 3:].shape)
    (p, r), (p2, r2) = (over_views(lambda f: forecast(net, f, 3, 2), v, "dihedral") for v in (x, x2))
    np.testing.assert_array_equal(p[:, :3], p2[:, :3])   # forecasts of frames 1..3 saw frames 0..2 only
    np.testing.assert_array_equal(r, r2)                  # the rollout saw the 3 context frames only
    assert np.abs(p[:, 3:] - p2[:, 3:]).max() > 0


def test_evaluate_and_predict_take_views(tmp_path, mnist_dir):
    import evaluate
    import predict
    from config import ModelConfig
    from model import build_model

    ckpt = str(tmp_path / "m.keras")
    build_model(ModelConfig(filters=(2, 2, 2), patch_size=4)).save(ckpt)
    reports = {}
    for views in ("none", "flips"):
        out = str(tmp_path / views)
        assert evaluate.main(["--checkpoint", ckpt, "--mnist", mnist_dir, "--sequences", "2", "--views", views,
                              "--out", out]) == 0
        reports[views] = json.load(open(os.path.join(out, "metrics.json")))
    assert reports["flips"]["views"] == "flips"
    ro = {v: r["rollout_10_10"] for v, r in reports.items()}
    # the baselines are scored as before; the model's forecasts are another pass's mean
    assert ro["flips"]["copy_last_frame"] == ro["none"]["copy_last_frame"]
    assert ro["flips"]["model"]["mean"]["mse_frame"] != ro["none"]["model"]["mean"]["mse_frame"]
    np.save(str(tmp_path / "clip.npy"), (_frames(n=1, t=4, s=64)[0, ..., 0] * 255).astype(np.uint8))
    assert predict.main([str(tmp_path / "clip.npy"), "--checkpoint", ckpt, "--frames", "2", "--views", "transpose",
                         "--out", str(tmp_path / "p")]) == 0
    assert np.load(str(tmp_path / "p" / "clip_npy_forecast.npy")).shape == (6, 64, 64)
