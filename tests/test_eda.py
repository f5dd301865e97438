import json
import os

import numpy as np
import pytest

import eda
import plots
import runio


def toy():
    """2 sequences x 2 frames of 2x2 pixels, values chosen by hand."""
    v = np.zeros((2, 2, 2, 2), np.uint8)
    v[0, 0] = [[255, 0], [0, 0]]      # frame mean 0.25
    v[0, 1] = [[255, 255], [0, 0]]    # 0.5
    v[1, 0] = [[0, 0], [0, 0]]        # 0
    v[1, 1] = [[255, 255], [255, 255]]  # 1
    return v


def test_intensity_over_time_by_hand():
    it = eda.intensity_over_time(toy())
    np.testing.assert_allclose(it["mean"], [0.125, 0.75])
    np.testing.assert_allclose(it["std"], [0.125, 0.25])


def test_pixel_histogram_by_hand():
    h = eda.pixel_histogram(toy())
    assert h["all"][0] == 9 and h["all"][255] == 7 and h["all"].sum() == 16
    assert h["nonzero"][0] == 0 and h["nonzero"][255] == 7
    assert h["fraction_zero"] == pytest.approx(9 / 16)


def test_mean_std_frames_by_hand():
    m, s = eda.mean_std_frames(toy())
    np.testing.assert_allclose(m, [[0.75, 0.5], [0.25, 0.25]])
    np.testing.assert_allclose(s[0, 0], np.sqrt(0.75 * 0.25))


def test_motion_and_overlap_by_hand():
    traj = np.zeros((1, 2, 3, 2), np.int64)
    traj[0, 0, :, 1] = [0, 3, 6]       # digit 0 moves right 3 px / frame
    traj[0, 1, :, 0] = [30, 26, 22]    # digit 1 moves up 4 px / frame, starting far below
    mo = eda.motion_from_trajectories(traj)
    np.testing.assert_allclose(sorted(mo["speed"]), [3, 3, 4, 4])
    np.testing.assert_allclose(sorted(mo["direction"]), [0, 0, np.pi / 2, np.pi / 2])
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[:, :, :] = 1  # full squares: overlap iff the boxes intersect
    ov = eda.digit_overlap(traj, np.array([[0, 1]]), digits)
    np.testing.assert_array_equal(ov, [[False, True, True]])  # |dr| = 30, 26, 22


def test_every_figure_is_written(tmp_path):
    import data
    from conftest import toy_digits

    d = toy_digits(20)
    v, traj, which = data.generate_moving_mnist(d, 3, seq_len=4, seed=0, return_trajectories=True)
    paths = eda.figures(v, eda.motion_from_trajectories(traj), eda.digit_overlap(traj, which, d),
                        str(tmp_path), "toy")
    assert len(paths) == 6
    for p in paths:
        assert os.path.getsize(p) > 1000 and open(p, "rb").read(4) == b"\x89PNG"
    est = eda.motion_from_frames(v)
    assert len(est["speed"]) > 0 and est["overlap"].shape == (3, 4)


def test_eda_cli(tmp_path, mnist_dir):
    out = str(tmp_path / "eda")
    assert eda.main(["--mnist", mnist_dir, "--sequences", "4", "--out", out]) == 0
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert 0 < stats["mean_intensity"] < 1
    raw = np.zeros((20, 3, 64, 64), np.uint8)
    raw[:, :, 5:20, 5:20] = 200
    np.save(str(tmp_path / "seq.npy"), raw)
    assert eda.main(["--data", str(tmp_path / "seq.npy"), "--out", str(tmp_path / "eda2")]) == 0
    assert eda.main(["--data", str(tmp_path / "missing.npy"), "--out", out, "--overwrite"]) == 2
    before = open(os.path.join(out, "stats.json")).read()
    assert eda.main(["--mnist", mnist_dir, "--sequences", "2", "--out", out]) == 2  # an earlier EDA: kept
    assert open(os.path.join(out, "stats.json")).read() == before
    assert eda.main(["--mnist", mnist_dir, "--sequences", "2", "--out", out, "--overwrite"]) == 0
    assert eda.main(["--mnist", mnist_dir, "--sequences", "0", "--out", str(tmp_path / "e3")]) == 2
    assert not (tmp_path / "e3").exists()


def test_training_curve_plots(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,learning_rate,loss,mae,pixel_acc,psnr,ssim,val_loss,val_mae,val_pixel_acc,val_psnr,val_ssim\n"
                   "0,0.001,0.5,0.1,0.9,15,0.5,0.6,0.12,0.89,14,0.45\n"
                   "1,0.0005,0.4,0.08,0.92,17,0.6,0.5,0.1,0.9,16,0.55\n")
    assert plots.main([str(tmp_path)]) == 0
    for f in ("loss_curve.png", "training_curves.png"):
        assert os.path.getsize(tmp_path / f) > 1000
    parsed = runio.read_log(str(log))
    np.testing.assert_allclose(parsed["val_psnr"], [14, 16])
    assert plots.main([str(tmp_path / "nowhere")]) == 2
