import os

import numpy as np
import pytest

import predict
from conftest import toy_digits


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from config import ModelConfig
    from model import build_model

    path = str(tmp_path_factory.mktemp("ckpt") / "model.keras")
    build_model(ModelConfig(filters=(4, 4, 4), patch_size=4)).save(path)
    return path


def _moving(n=6, size=48):
    import data

    v = data.generate_moving_mnist(toy_digits(10), 1, seq_len=n, size=size, num_digits=1, seed=0)[0]
    return v  # uint8 (n, size, size)


def _run(checkpoint, clip, tmp_path, *extra):
    return predict.main([str(clip), "--checkpoint", checkpoint, "--frames", "3", "--out", str(tmp_path / "o"),
                         *extra])


def _check_outputs(tmp_path, stem, n_in):
    out = np.load(str(tmp_path / "o" / f"{stem}_forecast.npy"))
    assert out.shape == (n_in + 3, 64, 64) and out.dtype == np.uint8
    assert os.path.getsize(str(tmp_path / "o" / f"{stem}_forecast.gif")) > 0
    return out


def test_npy_uint8_and_float_and_rgb(checkpoint, tmp_path):
    v = _moving()
    np.save(str(tmp_path / "a.npy"), v)
    assert _run(checkpoint, tmp_path / "a.npy", tmp_path) == 0
    out = _check_outputs(tmp_path, "a_npy", 6)
    # input frames (resized 48 -> 64) come back first
    assert out[:6].max() > 0
    np.save(str(tmp_path / "b.npy"), (v / 255.0).astype(np.float32)[..., None])
    assert _run(checkpoint, tmp_path / "b.npy", tmp_path) == 0
    np.save(str(tmp_path / "c.npy"), np.repeat(v[..., None], 3, axis=-1))
    assert _run(checkpoint, tmp_path / "c.npy", tmp_path) == 0
    _check_outputs(tmp_path, "c_npy", 6)


def test_gif_and_mp4(checkpoint, tmp_path):
    import cv2
    import imageio.v2 as imageio

    v = _moving(size=64)
    imageio.mimsave(str(tmp_path / "clip.gif"), list(v), format="GIF", loop=0)
    assert _run(checkpoint, tmp_path / "clip.gif", tmp_path) == 0
    _check_outputs(tmp_path, "clip_gif", 6)
    w = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for f in v:
        w.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    w.release()
    assert _run(checkpoint, tmp_path / "clip.mp4", tmp_path) == 0
    _check_outputs(tmp_path, "clip_mp4", 6)
    _check_outputs(tmp_path, "clip_gif", 6)  # the GIF's forecast is still there


def test_context_flag_keeps_last_frames(checkpoint, tmp_path):
    np.save(str(tmp_path / "a.npy"), _moving())
    assert _run(checkpoint, tmp_path / "a.npy", tmp_path, "--context", "4") == 0
    _check_outputs(tmp_path, "a_npy", 4)


def test_an_earlier_forecast_is_replaced_only_with_overwrite(checkpoint, tmp_path, capsys):
    np.save(str(tmp_path / "a.npy"), _moving())
    assert _run(checkpoint, tmp_path / "a.npy", tmp_path) == 0
    before = _check_outputs(tmp_path, "a_npy", 6)
    assert _run(checkpoint, tmp_path / "a.npy", tmp_path, "--context", "4") == 2
    assert "--overwrite" in capsys.readouterr().err
    np.testing.assert_array_equal(_check_outputs(tmp_path, "a_npy", 6), before)
    assert _run(checkpoint, tmp_path / "a.npy", tmp_path, "--context", "4", "--overwrite") == 0
    _check_outputs(tmp_path, "a_npy", 4)


@pytest.mark.parametrize("flags,msg", [(["--context", "0"], "--context must be >= 2"),
                                       (["--context", "1"], "--context must be >= 2"),
                                       (["--frames", "0"], "--frames must be >= 1")])
def test_out_of_range_flags_fail_before_any_work(checkpoint, tmp_path, capsys, flags, msg):
    np.save(str(tmp_path / "a.npy"), _moving())
    assert _run(checkpoint, tmp_path / "a.npy", tmp_path, *flags) == 2
    assert msg in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("make,msg", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"garbage" * 10), "not a readable"),
    (lambda p: np.save(str(p), np.zeros((1, 64, 64), np.uint8)), "need at least 2"),
    (lambda p: np.save(str(p), np.zeros((5, 64), np.uint8)), "must be"),
    (lambda p: np.save(str(p), np.full((3, 8, 8), np.nan, np.float32)), "NaN"),
    (lambda p: np.save(str(p), np.full((3, 8, 8), 3.0, np.float32)), r"\[0, 1\]"),
], ids=["missing", "corrupt", "one-frame", "2d", "nan", "range"])
def test_bad_npy_inputs(checkpoint, tmp_path, capsys, make, msg):
    p = tmp_path / "x.npy"
    make(p)
    assert _run(checkpoint, p, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(msg, err), err
    assert not (tmp_path / "o").exists()


def test_bad_video_and_type(checkpoint, tmp_path, capsys):
    (tmp_path / "v.mp4").write_bytes(b"\x00" * 100)
    assert _run(checkpoint, tmp_path / "v.mp4", tmp_path) == 2
    assert "no frames" in capsys.readouterr().err
    (tmp_path / "v.txt").write_text("hi")
    assert _run(checkpoint, tmp_path / "v.txt", tmp_path) == 2
    assert "unsupported" in capsys.readouterr().err


def test_clips_unlike_moving_mnist_get_one_warning_line_each(checkpoint, tmp_path, capsys):
    """A bright, non-square camera-like clip still gets a forecast (exit 0), with
    a line saying the aspect ratio changed and one saying it is unlike the training data."""
    rng = np.random.default_rng(0)
    clip = (rng.random((5, 48, 80)) * 0.5 + 0.3).astype(np.float32)  # grey, textured, wide
    np.save(str(tmp_path / "cam.npy"), clip)
    assert _run(checkpoint, tmp_path / "cam.npy", tmp_path) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(l.startswith("note: the 80x48 frames were squeezed") for l in err), err
    assert any(l.startswith("warning: this clip is unlike the training data") for l in err), err
    np.save(str(tmp_path / "digits.npy"), _moving(size=64))
    assert _run(checkpoint, tmp_path / "digits.npy", tmp_path) == 0
    assert capsys.readouterr().err == ""  # Moving MNIST itself: nothing to say
