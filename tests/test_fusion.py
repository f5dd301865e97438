"""The default detector: two parts fused by their scaled maximum (anomaly/fusion.py)."""

import json
import os

import numpy as np
import pytest

from anomaly.detector import Detector, ReconstructionDetector
from anomaly.features import FeatureConfig, clip_features
from anomaly.fusion import FusedDetector, FusionConfig, load_detector
from anomaly.config import AEConfig
from anomaly.model import build_autoencoder
from cli import InputError

S = 16


def _part(window):
    cfg = AEConfig(encoder=(4,), decoder=(4,), patch_size=4, window=window, frame_size=S)
    meta = {"features": FeatureConfig(frame_size=S).to_dict(), "normalizer": {"mean": [0, 0, 0], "std": [1, 1, 1]},
            "window": window, "stride": 1, "threshold": 1.0, "percentile": 95, "autoencoder": cfg.to_dict()}
    return ReconstructionDetector([build_autoencoder(cfg)], [meta])


def _fused(scales=None):
    parts = {"reconstruct": _part(4), "motion": _part(2)}
    return FusedDetector(parts, FusionConfig(["reconstruct", "motion"], scales or {"reconstruct": 2.0, "motion": 0.5},
                                             threshold=1.5))


def test_fuse_by_hand():
    det = _fused()
    got = det.fuse({"reconstruct": np.array([np.nan, 2.0, 4.0, 1.0]), "motion": np.array([1.0, 1.0, 1.0, 0.25])})
    # each part in units of its scale (2 and 0.5), the larger; no score until every part has one
    np.testing.assert_allclose(got, [np.nan, 2.0, 2.0, 0.5])


def test_fused_streaming_equals_offline_and_calibration_by_hand():
    det = _fused()
    raw = np.random.default_rng(0).normal(size=(9, S, S, 3)).astype(np.float32)
    offline = det.score_features(raw)
    parts = det.part_scores(raw)
    np.testing.assert_allclose(offline, np.maximum(parts["reconstruct"] / 2.0, parts["motion"] / 0.5))
    assert det.window == 4 and np.isnan(offline[:3]).all() and np.isfinite(offline[3:]).all()  # the longer window
    out = [det.add_features(f[..., :2], f[..., 2]) for f in raw]
    assert out[:3] == [None] * 3
    np.testing.assert_allclose([o[1] for o in out[3:]], offline[3:], rtol=1e-5)
    assert [o[0] for o in out[3:]] == list(offline[3:] > 1.5)

    clips = [raw[:6], raw[3:]]
    cfg = det.calibrate(clips, percentile=50, scale_percentile=100)
    by_clip = [det.part_scores(c) for c in clips]
    for name in det.parts:
        s = np.concatenate([b[name] for b in by_clip])
        assert cfg.scales[name] == pytest.approx(np.nanmax(s))  # the 100th percentile: the largest
    fused = np.concatenate([det.fuse(b) for b in by_clip])
    assert det.threshold == cfg.threshold == pytest.approx(np.nanmedian(fused))
    assert np.nanmax(fused) == pytest.approx(1.0)  # a part at its own largest value scores 1


def test_raised_by_names_the_part_whose_scaled_score_is_the_fused_score():
    raw = np.random.default_rng(0).normal(size=(9, S, S, 3)).astype(np.float32)
    det = _fused()
    parts = det.part_scores(raw)
    ratio = parts["reconstruct"][3:] / parts["motion"][3:]
    det.config.scales = {"reconstruct": 1.0, "motion": 1.0 / np.median(ratio)}  # each part on top on half the frames
    raised = []
    for f in raw:
        det.add_features(f[..., :2], f[..., 2])
        raised.append(det.raised_by)
    assert raised[:3] == [None] * 3  # no fused score yet
    assert raised[3:] == ["reconstruct" if r > np.median(ratio) else "motion" for r in ratio]
    assert set(raised[3:]) == {"reconstruct", "motion"}
    det.reset()
    assert det.raised_by is None


def test_named_scores_are_the_parts_whose_max_is_the_fused_score():
    det = _fused()
    raw = np.random.default_rng(1).normal(size=(9, S, S, 3)).astype(np.float32)
    named = det.named_scores(raw)
    parts = det.part_scores(raw)
    assert list(named) == ["reconstruct", "motion"]  # parts of one kind keep their own names
    np.testing.assert_allclose(named["motion"][3:], parts["motion"][3:] / 0.5)
    assert np.isnan(named["motion"][:3]).all()  # no fused score before the autoencoder's first window
    np.testing.assert_array_equal(np.max(np.stack(list(named.values())), axis=0), det.score_features(raw))
    # the same names per part, in the part's own units: their maximum is the part's score
    by_part = det.named_part_scores(raw)
    assert {p: list(n) for p, n in by_part.items()} == {"reconstruct": ["reconstruct"], "motion": ["motion"]}
    for p, n in by_part.items():
        np.testing.assert_array_equal(np.max(np.stack(list(n.values())), axis=0), parts[p])


def test_held_out_flagged_scores_each_clip_as_calibrated_on_the_others():
    from anomaly.calibrate import held_out_flagged

    rng = np.random.default_rng(2)
    clips = [rng.normal(size=(n, S, S, 3)).astype(np.float32) for n in (9, 7, 8)]
    det = _fused()
    got = held_out_flagged(det, clips + [clips[0][:3]], [50.0, 90.0])  # a clip shorter than a window takes no part
    above = {50.0: [], 90.0: []}
    for k in range(3):
        others = clips[:k] + clips[k + 1:]
        det.calibrate(others)  # the part scales from the other clips
        rest = np.concatenate([det.score_features(c) for c in others])
        mine = det.score_features(clips[k])
        for p in above:
            above[p].append(mine[np.isfinite(mine)] > np.percentile(rest[np.isfinite(rest)], p))
    assert got == {p: pytest.approx(np.mean(np.concatenate(v))) for p, v in above.items()}
    assert 0 < got[90.0] < got[50.0] < 1
    assert held_out_flagged(det, clips[:1] + [clips[0][:3]], [50.0]) is None  # one clip with a score


def test_warm_up_traces_the_stream_call_and_leaves_the_stream_alone():
    det = _fused()
    assert all(not p._fns for p in det.parts.values())
    det.warm_up()
    assert all(set(p._fns) == {(0, True)} for p in det.parts.values())  # the one-window call, as streaming makes it
    raw = np.random.default_rng(1).normal(size=(8, S, S, 3)).astype(np.float32)
    plain = [det.add_features(f[..., :2], f[..., 2]) for f in raw]
    det.reset()
    interrupted = [det.add_features(f[..., :2], f[..., 2]) for f in raw[:5]]
    det.warm_up()  # mid-stream: a blank window must not enter the buffers
    interrupted += [det.add_features(f[..., :2], f[..., 2]) for f in raw[5:]]
    assert interrupted == plain and plain[-1] is not None


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_streaming_with_workers_gives_add_frames_results_in_order(workers):
    from anomaly.streaming import scored_frames

    det = _fused()
    for p in det.parts.values():
        p.stride, p.smooth = 2, 3  # the in-order bookkeeping a worker must not do
    frames = list(np.random.default_rng(2).integers(0, 256, size=(11, 24, 24, 3), dtype=np.uint8))
    expected = [det.add_frame(f) for f in frames]
    det.reset()
    got = list(scored_frames(det, frames, workers))
    assert [f is g for f, (g, _) in zip(frames, got)] == [True] * len(frames)
    assert [r for _, r in got] == expected and expected[-1] is not None and expected[2] is None

    det.reset()
    early = scored_frames(det, iter(frames), workers)
    assert [r for _, r in (next(early) for _ in range(6))] == expected[:6]
    early.close()  # a stop (--max-frames, Ctrl-C) drops the frames in flight
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        next(scored_frames(det, frames, 0))


def test_fusion_config_refuses_bad_values():
    with pytest.raises(InputError, match="parts must be"):
        FusionConfig(["reconstruct", "reconstruct"], {"reconstruct": 1.0}, 1.0)
    with pytest.raises(InputError, match="scales must give each part"):
        FusionConfig(["reconstruct", "motion"], {"reconstruct": 1.0, "motion": 0.0}, 1.0)
    with pytest.raises(InputError, match="threshold"):
        FusionConfig(["motion"], {"motion": 1.0}, float("nan"))


def test_warmup_leaves_no_ghost_of_the_first_frame():
    # a bright block stands at the left in frame 0, then walks right one pixel a frame: with a slow
    # background rate and no warm-up, the place it left stays "foreground" (a ghost); with one, it is gone
    n = 32
    frames = np.zeros((30, n, n), np.uint8)
    for t in range(30):
        x = 2 if t == 0 else 8 + t // 2
        frames[t, 10:18, x:x + 4] = 255
    ghost = {}
    for warmup in (0, 10):
        d = clip_features(frames, FeatureConfig(frame_size=n, mog2_learning_rate=0.001, mog2_warmup=warmup))[..., 2]
        ghost[warmup] = d[20:, 12:16, 3:5].mean()
        assert d[25, 12:16, 21:23].mean() > 0.5  # the walker itself is seen where it is
    assert ghost[0] > 0.5 and ghost[10] < 0.05, ghost


def test_cli_trains_the_fused_default_and_every_command_takes_it(tmp_path, capsys, tiny_detector, monkeypatch):
    from anomaly import calibrate, detect, evaluate

    data, out = tiny_detector(dict(frames=32, n_train=3, n_test_normal=1, n_panic=1, n_runner=0, n_val_each=0,
                                   lanes_train=0, lanes_each=0), ["--seq-len", "8"])
    meta = json.load(open(os.path.join(out, "detector.json")))
    assert meta["parts"] == ["reconstruct", "motion"] and meta["scale_percentile"] == 99
    assert meta["calibrated_on"] == [os.path.join(data, "train", "normal_02.mp4")]  # the held-out clip
    for name, objective in (("reconstruct", "reconstruct"), ("motion", "motion")):
        part = json.load(open(os.path.join(out, name, "detector.json")))
        assert part["objective"] == objective and part["val_clips"] == 1
        assert part["features"]["mog2_learning_rate"] == 0.001 and part["features"]["mog2_warmup"] == 10
        assert Detector.load(os.path.join(out, name)).objective == objective  # each part works alone
    det = load_detector(out)
    assert isinstance(det, FusedDetector) and det.threshold == meta["threshold"]

    src = os.path.join(data, "test", "panic_00.mp4")
    d = str(tmp_path / "detections")
    assert detect.main(["--model", out, "--source", src, "--out", d]) == 0
    rows = open(os.path.join(d, "scores.csv")).read().splitlines()
    assert rows[7].split(",")[1] == "" and rows[8].split(",")[1] != ""  # scored from the AE's first window
    alerts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ALERT")]
    assert alerts and all(line.endswith((" (reconstruct)", " (motion)")) for line in alerts)
    ev = str(tmp_path / "eval")
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "test", "*.mp4"), "--out", ev]) == 0
    m = json.load(open(os.path.join(ev, "metrics.json")))
    assert m["threshold"] == meta["threshold"] and m["model"]["frames"] == m["baseline_mean_flow_magnitude"]["frames"]
    # which part raised the flagged frames: a frame is flagged when at least one part is above the threshold
    assert list(m["flagged_by_part"]) == ["reconstruct", "motion/surprise", "motion/pace", "motion/counts"]
    for clip in m["per_video"].values():
        by = clip["flagged_by"].values()
        assert max(by) <= clip["flagged"] <= sum(by)
    assert "frames above the threshold in each part (normal / anomalous):" in capsys.readouterr().out
    # the benchmarks that compare fusion rules and alert openings score the shipped rule as the detector
    # does: scaled and thresholded on its held-out clip, the same ROC-AUC and threshold
    import sys

    from conftest import ROOT

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import alert_opening
    import fusion_rules

    held_out, labelled = meta["calibrated_on"][0], os.path.join(data, "test", "*.mp4")
    fusion_rules.main(["--model", out, "--normal-videos", held_out, "--videos", labelled,
                       "--out", str(tmp_path / "rules.json")])
    auc = round(m["model"]["roc_auc"], 3)
    assert json.load(open(tmp_path / "rules.json"))["roc_auc"]["max @99"]["all"] == auc
    alert_opening.main(["--model", out, "--normal-videos", held_out, "--videos", labelled,
                        "--out", str(tmp_path / "opening.json")])
    shipped = json.load(open(tmp_path / "opening.json"))["by_k"]["1"]
    assert shipped["roc_auc"]["all"] == auc and shipped["threshold"] == pytest.approx(meta["threshold"])
    assert shipped["alarm"]["all"]["recall"] == pytest.approx(m["alarm"]["all"]["recall"])
    # the min on one named part only: at k = 1 still the shipped score; a name it lacks is refused
    alert_opening.main(["--model", out, "--normal-videos", held_out, "--videos", labelled, "--parts",
                        "motion/surprise", "--ks", "1", "2", "--out", str(tmp_path / "opening_s.json")])
    surprise = json.load(open(tmp_path / "opening_s.json"))
    assert surprise["parts"] == ["motion/surprise"] and list(surprise["by_k"]) == ["1", "2"]
    assert surprise["by_k"]["1"]["roc_auc"] == shipped["roc_auc"]
    with pytest.raises(SystemExit, match="error: --parts must be among"):
        alert_opening.main(["--model", out, "--normal-videos", held_out, "--videos", labelled, "--parts",
                            "motion/nothing", "--out", str(tmp_path / "no.json")])
    # the part scales hold for the saved settings: changed only where they are rescaled
    assert evaluate.main(["--model", out, "--videos", src, "--out", ev, "--overwrite", "--smooth", "2"]) == 2
    assert "anomaly.calibrate --smooth" in capsys.readouterr().err
    assert evaluate.main(["--model", out, "--model", out, "--videos", src, "--out", ev, "--overwrite"]) == 2
    assert "cannot be one member of an ensemble" in capsys.readouterr().err
    # clips it cannot score: one line each, and the metrics already written stay
    from anomaly.video import read_video, write_video

    short = write_video(str(tmp_path / "panic_short.mp4"), read_video(src)[:5])
    open(str(tmp_path / "panic_short.labels.txt"), "w").write("0\n0\n1\n1\n1\n")
    before = open(os.path.join(ev, "metrics.json")).read()
    assert evaluate.main(["--model", out, "--videos", short, "--out", ev, "--overwrite"]) == 2
    assert "panic_short.mp4: 5 frames, none scored: the detector's first score needs 8 frames" in \
        capsys.readouterr().err
    assert evaluate.main(["--model", out, "--videos", os.path.join(data, "test", "normal_00.mp4"), "--out", ev,
                          "--overwrite"]) == 2
    assert "scored frames are labelled 0; the metrics need both" in capsys.readouterr().err
    assert open(os.path.join(ev, "metrics.json")).read() == before
    normal = os.path.join(data, "test", "normal_00.mp4")
    # a calibration that fails after its parts have calibrated leaves every detector.json as it was
    metas = [os.path.join(out, *sub, "detector.json") for sub in ((), ("reconstruct",), ("motion",))]
    saved = [open(p).read() for p in metas]

    def fail(*args, **kwargs):
        raise InputError("the fused calibration failed")

    with monkeypatch.context() as mp:
        mp.setattr(FusedDetector, "calibrate_scores", fail)
        assert calibrate.main(["--model", out, "--videos", normal, "--smooth", "4"]) == 2
    assert "the fused calibration failed" in capsys.readouterr().err
    assert [open(p).read() for p in metas] == saved
    capsys.readouterr()
    assert calibrate.main(["--model", out, "--videos", normal, "--smooth", "4", "--percentile", "90",
                           "--labelled-videos", src]) == 0
    meta2 = json.load(open(os.path.join(out, "detector.json")))
    printed = capsys.readouterr().out
    from anomaly.video import video_fps

    seconds = len(read_video(normal)) / video_fps(normal)  # what the false alarms per hour stand on
    assert f"the 1 calibration clip(s), {calibrate.footage(seconds)} of footage" in printed
    assert [calibrate.footage(x) for x in (20.4, 270, 7200)] == ["20 s", "4.5 min", "2.0 h"]
    table = printed.split("recall\n")[1].splitlines()  # the operating points, one per percentile
    assert [r.split()[0] for r in table] == ["90*", "95", "98", "99", "99.5"]
    assert float(table[0].split()[1]) == pytest.approx(meta2["threshold"], abs=1e-4)  # the row of the one set
    assert all(r.split()[-1] != "-" for r in table)  # recall on the labelled panic clip
    assert all(r.split()[3] == "-" for r in table)  # one calibration clip: none to hold out
    assert meta2["calibrated_on"] == [normal] and meta2["percentile"] == 90 and meta2["scales"] != meta["scales"]
    for name in ("reconstruct", "motion"):
        part = json.load(open(os.path.join(out, name, "detector.json")))
        assert part["smooth"] == 4 and part["calibrated_on"] == [normal]
    assert load_detector(out).smooth == 4
