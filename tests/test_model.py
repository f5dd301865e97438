import dataclasses

import keras
import numpy as np
import pytest

from config import ModelConfig, preset_config
import model
from model import CausalConv3D, DepthToSpace, SpaceToDepth, build_model

TINY = ModelConfig(filters=(4, 4, 4), frame_size=8)


def test_default_is_the_reference_architecture():
    m = build_model()
    assert m.input_shape == (None, None, 64, 64, 1)
    assert m.output_shape == (None, None, 64, 64, 1)
    convs = [l for l in m.layers if isinstance(l, keras.layers.ConvLSTM2D)]
    assert [l.filters for l in convs] == [64, 64, 64]
    assert [l.kernel_size for l in convs] == [(5, 5), (3, 3), (1, 1)]
    assert all(l.return_sequences and l.padding == "same" for l in convs)
    kinds = [type(l).__name__ for l in m.layers[1:]]
    assert kinds == ["ConvLSTM2D", "BatchNormalization", "ReLU"] * 3 + ["CausalConv3D"]
    head = m.layers[-1]
    assert isinstance(head, keras.layers.Conv3D)
    assert head.kernel_size == (3, 3, 3) and head.filters == 1 and head.causal
    assert head.activation.__name__ == "sigmoid"
    assert m.count_params() == 746945


@pytest.mark.parametrize("t", [1, 2, 5])
def test_any_sequence_length(t):
    m = build_model(TINY)
    y = m(np.random.rand(2, t, 8, 8, 1).astype("float32"))
    assert y.shape == (2, t, 8, 8, 1)
    assert float(np.min(y)) >= 0.0 and float(np.max(y)) <= 1.0


def _future_changes_past(cfg, t=6, cut=3, seed=0):
    m = build_model(cfg)
    rng = np.random.default_rng(seed)
    x = rng.random((2, t, cfg.frame_size, cfg.frame_size, 1)).astype("float32")
    x2 = x.copy()
    x2[:, cut:] = rng.random(x2[:, cut:].shape)
    y, y2 = np.asarray(m(x, training=False)), np.asarray(m(x2, training=False))
    return y, y2


@pytest.mark.parametrize("cfg", [
    TINY,
    dataclasses.replace(TINY, patch_size=2),
    dataclasses.replace(TINY, patch_size=4, precision="bfloat16"),
    dataclasses.replace(TINY, precision="float16"),
    dataclasses.replace(preset_config("cpu").model, filters=(4, 4, 4)),
    dataclasses.replace(TINY, input_skip=True),
    dataclasses.replace(TINY, patch_size=4, precision="bfloat16", input_skip=True),
], ids=["fp32", "patch2", "patch4-bf16", "fp16", "cpu-preset", "skip", "skip-patch4-bf16"])
def test_forecast_depends_only_on_past_frames(cfg):
    y, y2 = _future_changes_past(cfg)
    # outputs 0..2 (forecasts of frames 1..3) saw frames 0..2 only: bit-identical
    np.testing.assert_array_equal(y[:, :3], y2[:, :3])
    assert np.abs(y[:, 3:] - y2[:, 3:]).max() > 0


def test_reference_model_is_causal():
    y, y2 = _future_changes_past(ModelConfig(), t=4, cut=2)
    np.testing.assert_array_equal(y[:, :2], y2[:, :2])


def test_leaky_head_reads_the_next_frame():
    """The published 'same' head: output t changes when frame t+1 changes."""
    y, y2 = _future_changes_past(dataclasses.replace(TINY, causal=False))
    assert np.abs(y[:, 2] - y2[:, 2]).max() > 0  # output 2 read frame 3


def test_causal_conv_matches_manual_padding():
    layer = CausalConv3D(2, (3, 3, 3))
    x = np.random.rand(1, 4, 5, 5, 3).astype("float32")
    y = np.asarray(layer(x))
    ref = keras.layers.Conv3D(2, (3, 3, 3), padding="valid")
    ref.build((None, None, 5, 5, 3))
    ref.set_weights(layer.get_weights())
    xp = np.pad(x, [(0, 0), (2, 0), (1, 1), (1, 1), (0, 0)])
    np.testing.assert_allclose(y, np.asarray(ref(xp)), rtol=1e-5, atol=1e-6)
    same = keras.layers.Conv3D(2, (3, 3, 3), padding="same")
    same.build((None, None, 5, 5, 3))
    same.set_weights(layer.get_weights())
    leaky = CausalConv3D(2, (3, 3, 3), causal=False)
    leaky.build((None, None, 5, 5, 3))
    leaky.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(leaky(x)), np.asarray(same(x)), rtol=1e-5, atol=1e-6)


def test_space_to_depth_round_trip():
    x = np.arange(2 * 3 * 8 * 8 * 1, dtype="float32").reshape(2, 3, 8, 8, 1)
    s = SpaceToDepth(4)(x)
    assert s.shape == (2, 3, 2, 2, 16)
    # channel k of patch (0, 0) is pixel (k // 4, k % 4)
    np.testing.assert_array_equal(np.asarray(s)[0, 0, 0, 0], x[0, 0, :4, :4, 0].ravel())
    np.testing.assert_array_equal(np.asarray(DepthToSpace(4)(s)), x)


def test_bad_patch_size():
    with pytest.raises(ValueError, match="patch_size"):
        build_model(dataclasses.replace(TINY, patch_size=3))


@pytest.mark.parametrize("cfg", [TINY, dataclasses.replace(TINY, patch_size=4, precision="bfloat16"),
                                 dataclasses.replace(TINY, patch_size=2, input_skip=True)],
                         ids=["fp32", "patch4-bf16", "skip-patch2"])
def test_keras_round_trip(tmp_path, cfg):
    m = build_model(cfg)
    x = np.random.rand(1, 3, 8, 8, 1).astype("float32")
    path = str(tmp_path / "m.keras")
    m.save(path)
    m2 = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(m2(x)))
    assert m2.get_layer("head").causal == cfg.causal


STEPWISE = [TINY, dataclasses.replace(TINY, patch_size=4, precision="bfloat16", frame_size=16),
            dataclasses.replace(TINY, patch_size=4, precision="bfloat16", frame_size=16, input_skip=True)]
STEPWISE_IDS = ["fp32", "patch4-bf16", "skip-patch4-bf16"]


@pytest.mark.parametrize("cfg", STEPWISE, ids=STEPWISE_IDS)
def test_stepwise_rollout_equals_rerunning_the_sequence(cfg):
    from model import rollout, rollout_naive

    net = build_model(cfg)
    for layer in net.layers:  # non-trivial BatchNorm statistics
        if layer.name.endswith("_bn"):
            g, b, mm, mv = layer.get_weights()
            layer.set_weights([g * 1.3, b + 0.1, mm + 0.05, mv * 0.5])
    ctx = np.random.default_rng(0).random((3, 5, cfg.frame_size, cfg.frame_size, 1)).astype("float32")
    fast = rollout(net, ctx, 4)
    assert getattr(net, "_rollout_fn", None) is not None  # the O(T) path ran
    slow = rollout_naive(net, ctx, 4)
    assert fast.shape == (3, 4, cfg.frame_size, cfg.frame_size, 1)
    tol = 1e-6 if cfg.precision == "float32" else 1e-3  # bf16: another graph rounds differently
    np.testing.assert_allclose(fast, slow, rtol=0, atol=tol)
    # first forecast = the network's own next-frame output after the context
    np.testing.assert_allclose(fast[:, 0], np.asarray(net(ctx, training=False))[:, -1], rtol=0, atol=tol)


@pytest.mark.parametrize("cfg", STEPWISE, ids=STEPWISE_IDS)
def test_fused_forecast_equals_both_protocols(cfg):
    from model import forecast, predict_frames, rollout

    net = build_model(cfg)
    v = np.random.default_rng(1).random((2, 7, cfg.frame_size, cfg.frame_size, 1)).astype("float32")
    nf, ro = forecast(net, v, context=3, horizon=5)
    assert nf.shape == (2, 6, cfg.frame_size, cfg.frame_size, 1) and ro.shape[1] == 5
    tol = 1e-6 if cfg.precision == "float32" else 1e-3
    np.testing.assert_allclose(nf, predict_frames(net, v[:, :-1]), rtol=0, atol=tol)
    np.testing.assert_allclose(ro, rollout(net, v[:, :3], 5), rtol=0, atol=tol)
    # the rollout reads only the context: changing later true frames changes nothing in it
    w = v.copy()
    w[:, 3:] = 1.0 - w[:, 3:]
    nf2, ro2 = forecast(net, w, context=3, horizon=5)
    np.testing.assert_array_equal(ro2, ro)
    np.testing.assert_array_equal(nf2[:, :3], nf[:, :3])
    with pytest.raises(ValueError, match="context"):
        forecast(net, v, context=7, horizon=2)


def test_input_skip_feeds_the_frames_to_the_head():
    net = build_model(dataclasses.replace(TINY, patch_size=2, input_skip=True))
    # head input = last block's 4 channels + the 2x2 patch's 4 pixels
    assert net.get_layer("head").kernel.shape[-2] == 4 + 4
    assert "input_skip" not in {l.name for l in build_model(TINY).layers}


def test_bn_momentum_reaches_the_layers_and_old_configs_read_as_keras_default():
    import json

    from config import Config, preset_config

    net = build_model(dataclasses.replace(TINY, bn_momentum=0.9))
    assert [l.momentum for l in net.layers if l.name.endswith("_bn")] == [0.9] * 3
    assert preset_config("cpu").model.bn_momentum == 0.9 and preset_config("seed").model.bn_momentum == 0.99
    d = json.loads(preset_config("cpu").to_json())
    del d["model"]["bn_momentum"]  # a config.json written before the field existed
    assert Config.from_dict(d).model.bn_momentum == 0.99


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_crafted_lambda_checkpoint_is_refused(tmp_path, ext):
    """A checkpoint carrying Python code (a Lambda layer) is never run: the Keras
    floor in requirements.txt (>= 3.12) refuses it in both formats under safe_mode."""
    import keras

    from cli import UserError

    inp = keras.Input((2,))
    out = keras.layers.Lambda(lambda x: x * 2.0)(inp)
    path = str(tmp_path / f"crafted{ext}")
    keras.Model(inp, out).save(path)
    with pytest.raises(UserError, match="cannot load"):
        model.load_predictor(path)


ALL_OPTIONS = [dataclasses.replace(TINY, patch_size=p, precision=prec, input_skip=skip, frame_size=16)
               for p in (1, 4) for prec in ("float32", "bfloat16") for skip in (False, True)]


@pytest.mark.parametrize("cfg", ALL_OPTIONS,
                         ids=[f"p{c.patch_size}-{c.precision}-skip{int(c.input_skip)}" for c in ALL_OPTIONS])
def test_stepwise_pass_equals_full_sequence_for_every_option(cfg):
    """Every ModelConfig option the presets and flags allow (causal head): the
    stepwise forecast equals running the full-sequence network."""
    from model import forecast, predict_frames, rollout_naive

    net = build_model(cfg)
    v = np.random.default_rng(2).random((2, 6, 16, 16, 1)).astype("float32")
    nf, ro = forecast(net, v, context=3, horizon=3)
    assert getattr(net, "_rollout_fn", None) is not None
    tol = 1e-6 if cfg.precision == "float32" else 2e-3
    np.testing.assert_allclose(nf, predict_frames(net, v[:, :-1]), rtol=0, atol=tol)
    np.testing.assert_allclose(ro, rollout_naive(net, v[:, :3], 3), rtol=0, atol=tol)


def test_stepwise_pass_refuses_a_layer_it_does_not_know():
    """A layer the stepper would skip sends forecast and rollout down the re-run path."""
    from model import forecast, predict_frames, rollout, rollout_naive

    base = build_model(dataclasses.replace(TINY, frame_size=16))
    net = keras.Model(base.input, keras.layers.Rescaling(0.5, name="extra")(base.output))
    v = np.random.default_rng(3).random((2, 5, 16, 16, 1)).astype("float32")
    nf, ro = forecast(net, v, context=2, horizon=3)
    assert getattr(net, "_rollout_fn", None) is None
    np.testing.assert_allclose(nf, predict_frames(net, v[:, :-1]), atol=1e-6)
    np.testing.assert_allclose(ro, rollout_naive(net, v[:, :2], 3), atol=1e-6)
    np.testing.assert_allclose(rollout(net, v[:, :2], 3), ro, atol=1e-6)
    assert nf.max() <= 0.5  # the extra layer's halving is in the forecasts
