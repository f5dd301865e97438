"""The motion model (anomaly/motion.py): how people move where they stand."""

import dataclasses
import json
import os

import numpy as np
import pytest

from anomaly import motion
from anomaly.cells import scaled_max
from anomaly.detector import Detector, MotionDetector
from anomaly.features import FeatureConfig, Normalizer
from anomaly.fusion import FusedDetector, FusionConfig
from anomaly.config import MotionConfig
from anomaly.model import build_motion_model

S = 16
IDENTITY = Normalizer([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


def _toy_frames(rng, n, top_vx, bottom_vx, people=6):
    """Raw features (n, S, S, 3) of a toy scene: 2x2-pixel "people" (density 1)
    at random places; their flow is (top_vx, 0) in the top half and
    (bottom_vx, 0) in the bottom half; no flow where nobody is."""
    raw = np.zeros((n, S, S, 3), np.float32)
    for t in range(n):
        for _ in range(people):
            r, c = 2 * rng.integers(0, S // 2), 2 * rng.integers(0, S // 2)
            raw[t, r:r + 2, c:c + 2, 2] = 1.0
            raw[t, r:r + 2, c:c + 2, 0] = top_vx if r < S // 2 else bottom_vx
    return raw


def test_the_trainer_uses_the_chosen_scale_percentile():
    from anomaly.train import TrainSettings

    assert TrainSettings(videos="x").scale_percentile == motion.SCALE_PERCENTILE


def test_config_round_trip_and_shapes():
    cfg = MotionConfig(widths=(4,), cell_widths=(8,), frame_size=S, border=2)
    assert (cfg.cell, cfg.grid, cfg.bins) == (2, 6, 26)
    assert MotionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    out = build_motion_model(cfg)(np.zeros((3, S, S, 1), np.float32))
    assert tuple(out["logits"].shape) == (3, 6, 6, 26) and tuple(out["speed"].shape) == (3, 6, 6)
    with pytest.raises(ValueError, match="border 8"):
        build_motion_model(MotionConfig(frame_size=S, border=8))


def test_frame_parts_by_hand():
    """Flow (0.3, 0.4) everywhere: speed 0.5, direction sector 5 of 8, speed band 1
    -> bin 2 + 5 * 3 + 1 = 18. Logits log 3 for that bin and 0 for the 25 others:
    p = 3 / 28 in every cell. Predicted speed 1.0 x scale 0.25 against 0.5 seen."""
    cfg = MotionConfig(frame_size=S, border=0, speed_scale=0.25, min_speed=0.02)
    raw = np.zeros((2, S, S, 3), np.float32)
    raw[..., 0], raw[..., 1], raw[..., 2] = 0.3, 0.4, 1.0
    assert (motion.bin_model(cfg).motion_bins(raw) == 18).all()
    logits = np.zeros((2, 8, 8, 26), np.float32)
    logits[..., 18] = np.log(3.0)
    out = {"logits": logits, "speed": np.ones((2, 8, 8), np.float32)}
    for how in ("local", "mean"):
        parts = motion.frame_parts(out, raw, cfg, how)
        np.testing.assert_allclose(parts[:, 0], np.log(28 / 3), rtol=1e-6)
        np.testing.assert_allclose(parts[:, 1], abs(np.log(0.52 / 0.27)), rtol=1e-6)
    np.testing.assert_allclose(scaled_max([[1.0, 4.0], [3.0, 1.0]], [2.0, 4.0]), [1.0, 1.5])
    # the counts part: every cell saw bin 18 eight times and bin 0 twice, so with
    # add-one smoothing over 26 bins p(18) = 9 / 36 and each cell scores log 4
    counts = np.zeros((8, 8, 26), np.int64)
    counts[..., 18], counts[..., 0] = 8, 2
    three = motion.frame_parts(out, raw, cfg, "local", counts)
    assert three.shape == (2, 3)
    np.testing.assert_allclose(three[:, :2], motion.frame_parts(out, raw, cfg, "local"))
    np.testing.assert_allclose(three[:, 2], np.log(4.0), rtol=1e-6)
    counts[0, 0] = 0  # one cell never saw anything: log 26 there, the mean over 64 cells
    np.testing.assert_allclose(motion.frame_parts(out, raw, cfg, "local", counts)[:, 2],
                               (63 * np.log(4.0) + np.log(26.0)) / 64, rtol=1e-6)
    np.testing.assert_array_equal(motion.fit_counts([raw], cfg)[..., 18], 1)  # frame 0 left out
    with pytest.raises(ValueError, match="score must be"):
        motion.frame_parts(out, raw, cfg, "median")


def test_speed_bands_are_fitted_on_the_training_clips():
    """Every cell of a frame moves at that frame's speed. Frame 0 (no flow) is left
    out, 0.05 is still; the moving cells are 64 each of 1..5 px/frame, so by
    linear interpolation over the 320 sorted speeds the 80th percentile is
    4 + 0.2 x (5 - 4) = 4.2 (64 of 320 at or above it: 20%, kept) and the
    99.95th is 5, which 20% of the cells reach: that edge moves just above 5."""
    assert motion.BAND_PERCENTILES == (80.0, 99.95)
    raw = np.zeros((7, S, S, 3), np.float32)
    raw[1:, ..., 0] = np.array([0.05, 1, 2, 3, 4, 5], np.float32)[:, None, None]
    edges = motion.fitted_speed_edges(motion.clip_cell_speeds([raw], 0), 0.1)
    np.testing.assert_allclose(edges, (0.1, 4.2, 5.0), rtol=1e-6)
    assert edges[1] == np.percentile(np.repeat([1.0, 2, 3, 4, 5], 64), 80)  # kept: no tie at 4.2
    assert edges[2] == np.nextafter(5.0, np.inf)
    assert motion.fitted_speed_edges(motion.clip_cell_speeds([raw[:2]], 0), 0.1) == (0.1, 0.1, 0.1)  # nothing moves: any motion is top band
    # a camera at half the frame rate sees everyone twice as fast per frame: the fitted
    # bands double with it, and every cell falls in the same bin (the still edge is flow's
    # noise floor and stays; no cell here is near it)
    rng = np.random.default_rng(3)
    clip = _toy_frames(rng, 30, 0.5, -0.5)
    clip[..., 0] *= rng.uniform(0.6, 1.6, clip.shape[:3])
    cfg = MotionConfig(frame_size=S, border=0)
    bins = []
    for k in (1.0, 2.0):
        fast = clip.copy()
        fast[..., :2] *= k
        edges = motion.fitted_speed_edges(motion.clip_cell_speeds([fast], 0), 0.1)
        bins.append(motion.bin_model(dataclasses.replace(cfg, speed_edges=edges)).motion_bins(fast))
    np.testing.assert_array_equal(bins[0], bins[1])
    assert len(np.unique(bins[0])) >= 6  # empty, and both directions in all three bands but one


@pytest.fixture(scope="module")
def toy_model():
    """A motion model trained on a toy scene whose top half walks right and
    bottom half walks left."""
    import keras

    rng = np.random.default_rng(0)
    train = [_toy_frames(rng, 120, 0.5, -0.5) for _ in range(2)]
    val = [_toy_frames(rng, 40, 0.5, -0.5)]
    keras.utils.set_random_seed(0)
    cfg = MotionConfig(widths=(8,), cell_widths=(16,), kernel=3, frame_size=S, border=0)
    net, cfg, _ = motion.fit(train, val, IDENTITY, cfg, lr=3e-3, epochs=25, batch_size=32, patience=25, verbose=0)
    assert cfg.speed_edges == motion.fitted_speed_edges(motion.clip_cell_speeds(train, 0), 0.1)  # the fit's bands: its training clips'
    return net, cfg, val


def test_motion_model_knows_which_way_each_half_walks(toy_model):
    """The same people at the same places: walking the way of their half is
    usual, walking against it is a surprise, and standing still changes the pace."""
    net, cfg, _ = toy_model
    rng = np.random.default_rng(1)
    usual = _toy_frames(rng, 20, 0.5, -0.5)
    against = usual.copy()
    against[..., 0] *= -1
    still = usual.copy()
    still[..., 0] = 0

    def parts(raw):
        return motion.frame_parts(net.predict(raw[..., 2:3], verbose=0), raw, cfg, "local")

    p_usual, p_against, p_still = parts(usual), parts(against), parts(still)
    assert p_against[:, 0].mean() > p_usual[:, 0].mean() + 2.0  # nats
    assert (p_against[:, 0] > p_usual[:, 0]).all()
    assert p_still[:, 1].min() > 2 * p_usual[:, 1].max()
    np.testing.assert_allclose(p_against[:, 1], p_usual[:, 1], rtol=1e-6)  # same speed, same pace
    # the speed head learned how fast people walk: about 0.5 px/frame at occupied cells
    speed = net.predict(usual[..., 2:3], verbose=0)["speed"] * cfg.speed_scale
    occupied = motion.cell_speeds(usual, 0) > 0.25
    assert 0.3 < speed[occupied].mean() < 0.7


def _motion_detector(net, cfg, val, threshold=1.0, counts=None):
    meta = {"objective": "motion", "features": FeatureConfig(frame_size=S).to_dict(),
            "normalizer": {"mean": IDENTITY.mean, "std": IDENTITY.std}, "window": 2, "stride": 1,
            "threshold": threshold, "percentile": 95, "score": "local", "smooth": 3, "border": 0,
            "motion": cfg.to_dict(), "scales": motion.calibrate_scales(net, cfg, IDENTITY, val, counts=counts)}
    if counts is not None:
        meta["location_counts"] = counts.tolist()
    return MotionDetector([net], [meta]), meta


@pytest.mark.parametrize("with_counts", [False, True])
def test_motion_detector_streams_as_it_scores_offline_and_round_trips(toy_model, tmp_path, with_counts):
    net, cfg, val = toy_model
    counts = motion.fit_counts(val, cfg) if with_counts else None
    det, meta = _motion_detector(net, cfg, val, counts=counts)
    assert set(meta["scales"]) == {"local", "mean"} and all(v > 0 for s in meta["scales"].values() for v in s)
    assert all(len(v) == (3 if with_counts else 2) for v in meta["scales"].values())
    raw = _toy_frames(np.random.default_rng(2), 9, 0.5, -0.5)
    offline = det.score_features(raw)
    assert np.isnan(offline[0]) and np.isfinite(offline[1:]).all()  # frame 0 has no flow of its own
    streamed = [det.add_features(f[..., :2], f[..., 2]) for f in raw]
    assert streamed[0] is None
    np.testing.assert_allclose([s[1] for s in streamed[1:]], offline[1:], rtol=1e-5)
    Detector.save(str(tmp_path / "m"), net, meta)
    back = Detector.load(str(tmp_path / "m"))
    assert isinstance(back, MotionDetector) and back.objective == "motion" and back.window == 2
    np.testing.assert_allclose(back.score_features(raw), offline, rtol=1e-5, equal_nan=True)
    from anomaly.detector import apply_overrides

    class Args:
        border = 2

    with pytest.raises(ValueError, match="fixed when it is trained"):
        apply_overrides(back, Args())
    # the score's named parts: each part of frame_parts over its scale, smoothed as the score
    named = det.named_scores(raw)
    assert list(named) == (["surprise", "pace", "counts"] if with_counts else ["surprise", "pace"])
    y = net.predict(raw[1:, ..., 2:3], verbose=0)
    by_hand = motion.frame_parts(y, raw[1:], cfg, "local", counts) / np.asarray(meta["scales"]["local"])
    for k, v in enumerate(named.values()):
        assert np.isnan(v[0])
        np.testing.assert_allclose(v[1:], [by_hand[max(0, t - 2):t + 1, k].max() for t in range(8)], rtol=1e-5)
    np.testing.assert_array_equal(np.max(np.stack(list(named.values())), axis=0), offline)
    fused = FusedDetector({"motion": det}, FusionConfig(["motion"], {"motion": 2.0}, threshold=1.0))
    named = fused.named_scores(raw)
    assert list(named)[0] == "motion/surprise"
    np.testing.assert_array_equal(np.max(np.stack(list(named.values())), axis=0), fused.score_features(raw))
    ae_meta = json.load(open(os.path.join(str(tmp_path / "m"), "detector.json")))
    ae_meta["objective"] = "reconstruct"
    with pytest.raises(ValueError, match="share their objective"):
        MotionDetector([net, net], [meta, ae_meta])


def test_held_out_flagged_rescales_the_motion_parts_on_the_other_clips(toy_model):
    from anomaly.calibrate import held_out_flagged

    net, cfg, val = toy_model
    det, _ = _motion_detector(net, cfg, val)
    rng = np.random.default_rng(3)
    clips = [_toy_frames(rng, 12, 0.5, -0.5), _toy_frames(rng, 12, 0.5, -0.5), _toy_frames(rng, 12, -0.5, 0.5)]
    got = held_out_flagged(det, clips, [80.0])
    above = []
    for k in range(3):
        others = clips[:k] + clips[k + 1:]
        det.rescale(others)
        rest = np.concatenate([det.score_features(c)[1:] for c in others])
        above.append(det.score_features(clips[k])[1:] > np.percentile(rest, 80))
    assert got == {80.0: pytest.approx(np.mean(np.concatenate(above)))}
    # the clip whose halves walk the wrong way, held out, is flagged on (nearly) every frame; the usual ones on few
    assert above[2].mean() > 0.9 and max(above[0].mean(), above[1].mean()) < 0.5


def test_cli_trains_and_evaluates_a_motion_detector(tmp_path, capsys, tiny_detector):
    from anomaly import evaluate, train

    data, out = tiny_detector(dict(frames=30, n_train=1, n_test_normal=1, n_panic=0, n_runner=0, n_val_each=0,
                                   lanes_train=3, lanes_each=1),
                              ["--objective", "motion", "--mog2-learning-rate", "0.001",
                               "--tensorboard", str(tmp_path / "tb")], scene=os.path.join("lanes", "train"))
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(tmp_path / "tb") for f in fs)
    meta = json.load(open(os.path.join(out, "detector.json")))
    assert meta["objective"] == "motion" and meta["window"] == 2 and meta["motion"]["frame_size"] == 32
    assert meta["motion"]["speed_scale"] > 0 and meta["threshold"] > 0
    assert meta["global_batch"] == 4 * 8  # what the fit used: four frames per window of --batch-size 8
    counts = np.asarray(meta["location_counts"])  # of the fit clips' frames, each frame once per cell
    assert counts.shape == (6, 6, 26) and (counts.sum(-1) == 29 * meta["train_clips"]).all()
    assert all(len(v) == 3 for v in meta["scales"].values()) and meta["scale_percentile"] == 99.0
    # recalibrating on the held-out clip at the same percentiles gives the same scales and
    # threshold; at the 100th percentile each scale is the part's largest held-out value
    from anomaly import calibrate

    assert calibrate.main(["--model", out, "--videos", meta["videos"][-1]]) == 0
    again = json.load(open(os.path.join(out, "detector.json")))
    for how in ("local", "mean"):
        np.testing.assert_allclose(again["scales"][how], meta["scales"][how], rtol=1e-5)
    np.testing.assert_allclose(again["threshold"], meta["threshold"], rtol=1e-5)
    assert calibrate.main(["--model", out, "--videos", meta["videos"][-1], "--scale-percentile", "100"]) == 0
    top = json.load(open(os.path.join(out, "detector.json")))
    assert top["scale_percentile"] == 100 and all(
        t > m for how in ("local", "mean") for t, m in zip(top["scales"][how], meta["scales"][how]))
    assert calibrate.main(["--model", out, "--videos", meta["videos"][-1], "--scale-percentile", "0"]) == 2
    assert "--scale-percentile must be in (0, 100]" in capsys.readouterr().err
    ev = str(tmp_path / "eval")
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "lanes", "test", "*.mp4"), "--out", ev,
                          "--normal-videos", os.path.join(data, "lanes", "train", "*.mp4")]) == 0
    m = json.load(open(os.path.join(ev, "metrics.json")))
    assert {"stop", "wrong_way", "pattern"} <= set(m["per_kind"])
    # --videos repeated: the clips pooled, those sharing a file name told apart by their folders
    both = str(tmp_path / "eval_both")
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "lanes", "test", "[ns]*_00.mp4"),
                          "--videos", os.path.join(data, "test", "normal_00.mp4"), "--out", both]) == 0
    m2 = json.load(open(os.path.join(both, "metrics.json")))
    assert sorted(m2["per_video"]) == ["lanes_test_normal_00", "lanes_test_stop_00", "test_normal_00"]
    assert set(m2["per_kind"]) == {"all", "stop"} and m2["per_kind"]["all"]["model"]["frames"] == 3 * 29
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "lanes", "test", "*.mp4"), "--out", ev,
                          "--border", "0", "--overwrite"]) == 2
    assert "fixed when it is trained" in capsys.readouterr().err
    # a folder holds one evaluation: replaced only with --overwrite, and then whole
    plots = sorted(f for f in os.listdir(ev) if f.startswith("scores_"))
    assert len(plots) == 7  # one per test clip
    stop_only = os.path.join(data, "lanes", "test", "[ns]*_00.mp4")  # normal_00 and stop_00
    assert evaluate.main(["--model", out, "--videos", stop_only, "--out", ev]) == 2
    assert "--overwrite" in capsys.readouterr().err and len(os.listdir(ev)) == len(plots) + 2
    assert evaluate.main(["--model", out, "--videos", stop_only, "--out", ev, "--overwrite"]) == 0
    assert sorted(f for f in os.listdir(ev) if f.startswith("scores_")) == ["scores_normal_00.png", "scores_stop_00.png"]
    # a detector is replaced only with --overwrite, checked before any work
    before = open(os.path.join(out, "detector.json")).read()
    assert train.main(["--videos", os.path.join(data, "lanes", "train", "*.mp4"), "--out", out, "--epochs", "1",
                       "--frame-size", "32", "--objective", "motion", "--verbose", "0"]) == 2
    assert "--overwrite" in capsys.readouterr().err and open(os.path.join(out, "detector.json")).read() == before
    assert train.main(["--videos", os.path.join(data, "lanes", "train", "*.mp4"), "--out", out, "--epochs", "1",
                       "--frame-size", "32", "--objective", "motion", "--verbose", "0", "--overwrite",
                       "--counts", "false", "--scale-percentile", "95"]) == 0
    two = json.load(open(os.path.join(out, "detector.json")))  # the two-part score of earlier detectors
    assert "location_counts" not in two and two["scale_percentile"] == 95
    assert all(len(v) == 2 for v in two["scales"].values())


def test_detector_config_checks_counts_and_scales(toy_model):
    """detector.json's counts must fit the model's grid and bins, and the scales
    must match the parts: two without counts, three with them."""
    from anomaly.config import DetectorConfig

    net, cfg, val = toy_model
    counts = motion.fit_counts(val, cfg)
    _, meta = _motion_detector(net, cfg, val, counts=counts)
    assert DetectorConfig.from_dict(json.loads(json.dumps(meta))).to_dict() == DetectorConfig.from_dict(meta).to_dict()
    for change, message in (({"location_counts": counts[:4].tolist()}, "location_counts must be"),
                            ({"location_counts": (-counts).tolist()}, "location_counts must be"),
                            ({"location_counts": (counts + 0.5).tolist()}, "location_counts must be"),
                            ({"scales": {k: v[:2] for k, v in meta["scales"].items()}}, "scales must map"),
                            ({"scales": {"local": meta["scales"]["local"]}}, "scales must map"),
                            ({"scales": {k: [0.0, *v[1:]] for k, v in meta["scales"].items()}}, "scales must map")):
        with pytest.raises(ValueError, match=message):
            DetectorConfig.from_dict({**meta, **change})
    two = {k: v for k, v in meta.items() if k != "location_counts"}  # a detector from before the counts
    with pytest.raises(ValueError, match="scales must map"):
        DetectorConfig.from_dict(two)
    two["scales"] = {k: v[:2] for k, v in meta["scales"].items()}
    assert DetectorConfig.from_dict(two).location_counts is None
