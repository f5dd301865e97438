"""The benchmark scripts' logic on tiny inputs (their targets are met in the scripts, not here)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import common  # noqa: E402
import time_to_quality  # noqa: E402


def test_flop_count_by_hand():
    # one ConvLSTM layer, 1 filter, 1x1 kernel, 1-channel 2x2 frame: 4 px x 4 gates x (1 + 1) MACs x 2
    assert common.convlstm_stack_flops(2, 1, (1,), (1,), (1, 1, 1)) == 2 * 4 * 4 * 2 + 2 * 4 * 1
    ref = common.convlstm_stack_flops(64, 1, (64, 64, 64), (5, 3, 1), (3, 3, 3))
    assert ref == pytest.approx(6.1e9, rel=0.02)
    # 4x4 patches: 16x fewer positions, 16 input channels
    cpu = common.convlstm_stack_flops(64, 1, (64, 64, 64), (5, 3, 1), (3, 3, 3), patch=4)
    assert 10 < ref / cpu < 20


def test_peak_rss_sees_an_allocation():
    """An allocation made and freed inside the block: only the sampler can have seen it."""
    import time

    before = common.rss_mb()
    with common.PeakRSS() as m:
        a = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.2)
        del a
    after = common.rss_mb()
    assert after - before < 50  # freed: the end point alone would not show it
    assert m.peak - before > 150, (before, m.peak, after)


def test_time_to_quality_summary():
    log = {"epoch": np.array([0, 1, 2]), "elapsed_min": np.array([1.0, 2.0, 3.0]),
           "val_ssim": np.array([0.5, 0.91, 0.95]), "val_psnr": np.array([15.0, 20.0, 22.0])}
    s = time_to_quality.summarise(log, 0.90)
    assert s["minutes_to_target"] == 2.0 and s["epoch_at_target"] == 2 and s["best_val_ssim"] == 0.95
    assert time_to_quality.summarise(log, 0.99)["minutes_to_target"] is None


def test_train_throughput_quick_runs(capsys):
    import train_throughput

    assert train_throughput.matmul_gflops("float32", n=64, reps=1) > 0
    m = train_throughput.stock_reference()
    assert [l.kernel_size for l in m.layers if "conv_lstm" in l.name] == [(5, 5), (3, 3), (1, 1)]


def test_time_to_quality_takes_train_options():
    cfg = time_to_quality.run_config("cpu", ["--input-skip", "true", "--lr", "3e-3"], 25, 7)
    assert cfg.model.input_skip and cfg.train.lr == 3e-3 and cfg.model.patch_size == 4
    assert cfg.train.steps_per_epoch == 25 and cfg.train.seed == 7 and cfg.train.patience == 100000
    assert not time_to_quality.run_config("cpu", [], 25, 0).model.input_skip
    with pytest.raises(SystemExit):
        time_to_quality.run_config("cpu", ["--no-such-option"], 25, 0)


def test_time_to_quality_from_a_run_with_keras_stdout(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,loss,val_psnr,val_ssim\n0,1,10,0.5\n1,0.5,20,0.92\n")
    (tmp_path / "train_stdout.log").write_text(
        "Epoch 1/5\n100/100 - 120s - 1s/step - loss: 1\nEpoch 2/5\n100/100 - 60s - 1s/step - loss: 0.5\n")
    log = time_to_quality.load_run_log(str(tmp_path))
    np.testing.assert_allclose(log["elapsed_min"], [2.0, 3.0])
    assert time_to_quality.summarise(log, 0.9)["minutes_to_target"] == 3.0


def test_eval_throughput_runs_on_a_tiny_model(tmp_path, mnist_dir, capsys):
    import json

    import eval_throughput

    from config import ModelConfig
    from model import build_model

    path = str(tmp_path / "m.keras")
    build_model(ModelConfig(filters=(4,), kernel_sizes=(3,), patch_size=4)).save(path)
    eval_throughput.main(["--checkpoint", path, "--mnist", mnist_dir, "--sequences", "5", "--batch-size", "2"])
    out = json.loads(capsys.readouterr().out)
    assert out["sequences"] == 5 and out["frames_per_s"] == pytest.approx(10 * out["sequences_per_s"], rel=0.01)
    assert set(out["model"]) == {"rollout_10_10"} and 0 < out["model"]["rollout_10_10"]["ssim"] <= 1
    assert out["peak_rss_mb"] > 0 and isinstance(out["target_met"], bool)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny untrained predictor's file."""
    from config import ModelConfig
    from model import build_model

    path = str(tmp_path_factory.mktemp("ckpt") / "m.keras")
    build_model(ModelConfig(filters=(2, 2, 2), patch_size=4)).save(path)
    return path


def test_conventions_scores_one_set_under_each_offset(tmp_path, mnist_dir, ckpt):
    import json

    import conventions

    out = str(tmp_path / "c.json")
    conventions.main(["--checkpoint", ckpt, "--mnist", mnist_dir, "--sequences", "2", "--offsets", "0,0.5",
                      "--out", out])
    r = json.load(open(out))["models"][ckpt]
    mse = [r["by_offset"][o]["rollout_10_10"]["model"]["mse_frame"] for o in ("0.0", "0.5")]
    assert r["spread"] == pytest.approx((max(mse) - min(mse)) / min(mse))
    # the same digits moved by up to a pixel: copying the last frame scores differently, but close
    copy = [r["by_offset"][o]["next_frame"]["copy_last_frame"]["mse_frame"] for o in ("0.0", "0.5")]
    assert copy[0] != copy[1] and abs(copy[0] - copy[1]) / copy[0] < 0.2


def test_learning_curve_places_a_fine_tune_after_its_start(tmp_path):
    import csv
    import json

    import learning_curve

    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"train": {"steps_per_epoch": 10, "batch_size": 4}}))
        (d / "log.csv").write_text("epoch,elapsed_min,val_rollout_mse_frame,val_rollout_ssim,val_next_ssim\n"
                                   "0,1.0,90,0.7,0.8\n1,2.0,80,0.75,0.85\n")
    out = str(tmp_path / "lc")
    learning_curve.main(["--run", f"base={tmp_path / 'a'}", "--run", f"tuned={tmp_path / 'b'}@1000", "--out", out])
    rows = list(csv.DictReader(open(out + ".csv")))
    assert [(r["run"], int(r["sequences"])) for r in rows] == [("base", 40), ("base", 80), ("tuned", 1040),
                                                                ("tuned", 1080)]
    assert os.path.getsize(out + ".png") > 0
    with pytest.raises(SystemExit, match="LABEL=FOLDER@SEQUENCES"):
        learning_curve.main(["--run", f"x={tmp_path / 'a'}@many", "--out", out])


def test_fusion_rules_by_hand():
    import fusion_rules

    # Scales at the 100th percentile of the normal clip: 4 for both parts, so
    # normal frames score (0.25, 1), (0.5, 0.25) and anomalous (0.75, 0), (0, 0.75).
    # Each part one named part of itself ({part: {named part: scores}}, as a fused detector gives them).
    named = lambda a, b: {"a": {"a": np.array(a)}, "b": {"b": np.array(b)}}
    normal = [named([1.0, 2.0, 4.0], [1.0, 4.0, 2.0])]
    clips = [("normal", named([np.nan, 1.0, 2.0], [0.0, 4.0, 1.0]), np.array([0, 0, 0])),
             ("stop", named([3.0, 0.0], [0.0, 3.0]), np.array([1, 1]))]
    table = fusion_rules.rule_table(clips, normal, sweep=(100,))
    # max: anomalous 0.75 beats normal 0.5, loses to 1 -> 2 of 4 pairs; the NaN frame is left out.
    # mean: anomalous 0.375 ties normal 0.375, loses to 0.625 -> 1 of 4.
    # excess (medians 2 and 2, ranges 4 - 2): normal (1, 4) -> 0 + 1, (2, 1) -> 0 + 0; anomalous
    # (3, 0) and (0, 3) -> 0.5 each: each beats 0, loses to 1 -> 2 of 4.
    # centred_max: normal (1, 4) -> max(-0.5, 1) = 1, (2, 1) -> max(0, -0.5) = 0; anomalous (3, 0)
    # and (0, 3) -> max(0.5, -1) = 0.5 each -> 2 of 4.
    # a alone: anomalous 3 beats 1 and 2, 0 beats neither -> 2 of 4; b alone: 3 beats 1 -> 1 of 4.
    # max_or_excess: on the scaling clip max scores (0.25, 1, 1) and excess (0, 1, 1), both at most 1,
    # so the labelled frames score max(max, excess): normal (1, 4) -> 1, (2, 1) -> 0.5; anomalous
    # 0.75 each (max 0.75, excess 0.5) -> 2 of 4.
    # rank: each part's place among its normal scores (1, 2, 4): 1 -> 0, 2 -> 0.5, 3 -> 0.75, 4 -> 1, below
    # 1 -> 0, above 4 1 + (s - 4) / 4; normal (1, 4) -> 1, (2, 1) -> 0.5; anomalous (3, 0) and (0, 3)
    # -> 0.75 each -> 2 of 4.
    assert table == {"a alone": {"all": 0.5, "stop": 0.5}, "b alone": {"all": 0.25, "stop": 0.25},
                     "max @100": {"all": 0.5, "stop": 0.5}, "mean @100": {"all": 0.25, "stop": 0.25},
                     "excess @100": {"all": 0.5, "stop": 0.5}, "excess_l2 @100": {"all": 0.5, "stop": 0.5},
                     "centred_max @100": {"all": 0.5, "stop": 0.5}, "max_or_excess @100": {"all": 0.5, "stop": 0.5},
                     "rank": {"all": 0.5, "stop": 0.5}}
    ranked = fusion_rules._rank_rule([{"a": np.array([1.0, 2.0, 4.0]), "b": np.array([np.nan, 4.0, 2.0])}])
    # the first frame, where b has no score, is left out of both parts' normal scores: a ranks among (2, 4)
    np.testing.assert_allclose(ranked({"a": np.array([3.0, 6.0, 1.0]), "b": np.array([2.0, 2.0, 1.0])}),
                               [0.5, 1.5, 0.0])
    # each rule over its own top on the normal clip: both tops 1 here, so a frame with a = 8, b = 2
    # scores max(max 2, excess 3) = 3; with a normal clip a = (1, 2, 3), b = (1, 3, 2) the max's
    # top is 0.75 and the excess's 0.5, and the same frame scores max(2 / 0.75, 3 / 0.5) = 6
    frame = {"a": np.array([8.0]), "b": np.array([2.0])}
    for clip, want in (([fusion_rules.part_level(normal[0])], 3.0),
                       ([{"a": np.array([1.0, 2.0, 3.0]), "b": np.array([1.0, 3.0, 2.0])}], 6.0)):
        either = fusion_rules._max_or_excess(clip, {"a": 4.0, "b": 4.0}, {"a": 2.0, "b": 2.0}, 100)
        np.testing.assert_allclose(either(frame), [want])
    rules, scales, medians = fusion_rules._rules(), {"a": 4.0, "b": 4.0}, {"a": 2.0, "b": 2.0}
    np.testing.assert_allclose(rules["excess"]({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([4.0, 1.0, 0.0])},
                                               scales, medians), [1.0, 0.0, 0.5])
    # excess_l2: a frame with both parts 1 above their medians (range 2) -> sqrt(0.5^2 + 0.5^2)
    np.testing.assert_allclose(rules["excess_l2"]({"a": np.array([3.0]), "b": np.array([3.0])}, scales, medians),
                               [np.sqrt(0.5)])
    # centred_max keeps a part below its median negative: (1 - 2) / 2 = -0.5 against (0 - 2) / 2 = -1
    np.testing.assert_allclose(rules["centred_max"]({"a": np.array([1.0]), "b": np.array([0.0])}, scales, medians),
                               [-0.5])


def test_convention_bayes_group_variance_by_hand():
    import convention_bayes

    keys = np.array([7, 7, 9, 9, 9, 4])
    future = np.array([[1, 5], [3, 5], [2, 0], [2, 0], [2, 0], [6, 6]])
    var, spread, count = convention_bayes.posterior_variance(keys, future)
    # group 7: frame 0 values 1, 3 (unbiased variance 2), frame 1 constant -> mean over frames 1.0
    np.testing.assert_allclose(var, [1.0, 1.0, 0, 0, 0, 0])
    assert spread.tolist() == [True, True, False, False, False, False]
    assert count.tolist() == [2, 2, 3, 3, 3, 1]


def test_convention_bayes_positions_by_hand():
    """A digit starting on the near wall, moving straight along the axis at 0.1 a frame:
    36 x (0.1, 0.2, ...) truncated or rounded; the tenth step lands a hair short of the far
    wall (0.1 summed ten times is 0.9999999999999999: 35 truncated, 36 rounded), the
    eleventh is clamped onto it (36), and it comes back."""
    import convention_bayes

    x0, theta = np.array([0.0]), np.array([np.pi / 2])
    assert convention_bayes.axis_positions(x0, theta, 0.0)[0].tolist() == [
        3, 7, 10, 14, 18, 21, 25, 28, 32, 35, 36, 32, 28, 25, 21, 18, 14, 10, 7, 3]
    assert convention_bayes.axis_positions(x0, theta, 0.5)[0].tolist() == [
        4, 7, 11, 14, 18, 22, 25, 29, 32, 36, 36, 32, 29, 25, 22, 18, 14, 11, 7, 4]


def test_the_choice_rule_never_buys_one_number_with_another():
    from view_sets import choose

    def row(psnr, ssim, mse, rssim):
        return {"next_frame": {"psnr": psnr, "ssim": ssim}, "rollout_10_10": {"mse_frame": mse, "ssim": rssim}}

    rows = {"none": row(22.0, 0.90, 50.0, 0.88), "flips": row(21.9, 0.90, 45.0, 0.89),
            "transpose": row(22.1, 0.90, 48.0, 0.88), "dihedral": row(22.2, 0.91, 49.0, 0.88)}
    assert choose(rows) == "transpose"        # flips has the lowest MSE but a lower PSNR
    rows["transpose"]["rollout_10_10"]["ssim"] = 0.87
    assert choose(rows) == "dihedral"
    rows["dihedral"]["rollout_10_10"]["mse_frame"] = 51.0
    assert choose(rows) == "none"             # nothing beats one pass on every number


def test_view_sets_scores_each_set_on_one_generated_set(tmp_path, mnist_dir, ckpt):
    import json

    import view_sets

    out = str(tmp_path / "v.json")
    view_sets.main(["--checkpoint", ckpt, "--mnist", mnist_dir, "--sequences", "2", "--sets", "none,flips",
                    "--out", out])
    r = json.load(open(out))
    assert r["data"]["digits"] == "MNIST test split 8000-8499" and r["passes"] == {"none": 1, "flips": 4}
    assert r["chosen"] == view_sets.choose(r["model"])
    assert r["model"]["none"]["rollout_10_10"] != r["model"]["flips"]["rollout_10_10"]


def test_alert_opening_by_hand():
    import alert_opening

    # a one-frame spike (5) and a three-frame stretch (3): with k = 2 the spike opens nothing
    s = np.array([0.0, 5.0, 0.0, 0.0, 3.0, 3.0, 3.0, 0.0])
    np.testing.assert_array_equal(alert_opening.opening(s, 1, 2), [0, 5, 5, 0, 3, 3, 3, 3])
    np.testing.assert_array_equal(alert_opening.opening(s, 2, 2), [0, 0, 0, 0, 0, 3, 3, 3])
    np.testing.assert_array_equal(alert_opening.causal_min(np.array([np.nan, 2.0, 1.0, 4.0]), 2),
                                  [np.nan, 2.0, 1.0, 1.0])
    # one part, its scale the normal clip's largest value (100th percentile), the threshold the
    # 80th percentile of the normal clip's fused scores (linear: 4 x 0.8 = 3.2 between sorted values)
    normal = [{"a": {"a": np.array([1.0, 4.0, 1.0, 1.0, 1.0])}}]
    clips = [("normal", {"a": {"a": np.array([1.0, 4.0, 1.0, 1.0, 1.0])}}, np.zeros(5, int), 10.0),
             ("stop", {"a": {"a": np.array([1.0, 1.0, 3.0, 3.0, 1.0])}}, np.array([0, 0, 1, 1, 1]), 10.0)]
    table = alert_opening.opening_table(clips, normal, smooth=1, scale_percentile=100, percentile=80, ks=(1, 2))
    # k = 1: scale 4, normal fused (.25, 1, .25, .25, .25) -> threshold .25 + 0.2 x .75 = 0.4; the stop
    # clip's anomalous frames (.75, .75, .25): 2 of 3 flagged; the spike is one false alarm in 0.5 s
    # (120 a minute); ROC-AUC: .75 beats six .25 and loses to 1, .25 ties six of 7 -> (12 + 3) / 21
    one = table[1]
    assert one["threshold"] == pytest.approx(0.4) and one["alarm"]["all"]["recall"] == pytest.approx(2 / 3)
    assert one["alarm"]["all"]["false_alarms_per_min"] == pytest.approx(120.0)
    assert one["roc_auc"]["all"] == round(15 / 21, 3)
    # k = 2: the spike goes, scale 1, normal fused all 1 -> threshold 1; the stop clip's min over 2
    # frames is (1, 1, 1, 3, 1): its anomalous (1, 3, 1) -> 1 of 3 flagged, no false alarm;
    # ROC-AUC: 3 beats all 7 normal frames (all 1), each 1 ties them -> (7 + 7) / 21
    two = table[2]
    assert two["threshold"] == 1.0 and two["alarm"]["all"]["recall"] == pytest.approx(1 / 3)
    assert two["alarm"]["all"]["false_alarms_per_min"] == 0
    assert two["roc_auc"]["all"] == round(14 / 21, 3)
    # the same part as the max of two named parts, the spike in "a/s" and a flat 1 in "a/b": the min
    # applied to "a/s" alone gives k = 2's numbers; applied to "a/b" alone (flat, unchanged), k = 1's
    split = lambda c: {"a": {"a/s": c["a"]["a"], "a/b": np.ones(5)}}
    clips2 = [(k, split(p), y, f) for k, p, y, f in clips]
    for only, want in ((["a/s"], two), (["a/b"], one)):
        t = alert_opening.opening_table(clips2, [split(normal[0])], smooth=1, scale_percentile=100,
                                        percentile=80, ks=(2,), only=only)[2]
        assert t["threshold"] == pytest.approx(want["threshold"]) and t["roc_auc"] == want["roc_auc"]
