"""Dependencies point from entry points to library modules, never the other way."""

import ast
import os

import pytest

from conftest import ROOT

ENTRY_POINTS = {"train", "evaluate", "predict", "eda", "anomaly.detect", "anomaly.evaluate",
                "anomaly.calibrate", "anomaly.train", "anomaly.synthetic", "anomaly.footage"}


def imported_modules(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_no_module_imports_an_entry_point():
    offenders = []
    for folder in (ROOT, os.path.join(ROOT, "anomaly")):
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            bad = sorted(set(imported_modules(path)) & ENTRY_POINTS)
            if bad:
                offenders.append(f"{os.path.relpath(path, ROOT)} imports {', '.join(bad)}")
    assert not offenders, offenders


def test_the_check_sees_an_offender(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("from anomaly import detect\nimport evaluate\n")
    assert {"anomaly.detect", "evaluate"} <= set(imported_modules(str(p)))


def project_modules(root):
    """{module name: path} of the project's Python modules (top level and anomaly/)."""
    mods = {}
    for pkg, folder in (("", root), ("anomaly.", os.path.join(root, "anomaly"))):
        for name in os.listdir(folder):
            if name.endswith(".py") and name != "__init__.py":
                mods[pkg + name[:-3]] = os.path.join(folder, name)
    return mods


def import_cycle(mods):
    """One import cycle among `mods` (a list of module names, first = last), or None.
    Imports inside functions count: a cycle there is still a low module reaching up."""
    graph = {m: sorted(set(imported_modules(p)) & set(mods) - {m}) for m, p in mods.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(mods):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_imports_have_no_cycle():
    cycle = import_cycle(project_modules(ROOT))
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_sees_a_cycle(tmp_path):
    (tmp_path / "anomaly").mkdir()
    (tmp_path / "low.py").write_text("import os\n")
    (tmp_path / "anomaly" / "cells.py").write_text("import low\n")
    (tmp_path / "anomaly" / "detector.py").write_text("from anomaly.cells import x\n")
    assert import_cycle(project_modules(str(tmp_path))) is None
    (tmp_path / "anomaly" / "cells.py").write_text("import low\n\ndef f():\n    from anomaly import detector\n")
    assert import_cycle(project_modules(str(tmp_path))) == ["anomaly.cells", "anomaly.detector", "anomaly.cells"]


def test_entry_points_turn_only_project_errors_into_error_lines(capsys):
    """run_cli: a UserError (and its InputError, also a ValueError) is one
    `error:` line and exit 2; any other exception is a bug and propagates."""
    from cli import InputError, UserError, run_cli

    def bad_input():
        raise InputError("--frames must be >= 1, got 0")

    assert run_cli(bad_input) == 2
    assert capsys.readouterr().err == "error: --frames must be >= 1, got 0\n"
    assert issubclass(InputError, ValueError) and issubclass(InputError, UserError)

    def bug():
        raise ValueError("operands could not be broadcast together")

    with pytest.raises(ValueError, match="broadcast"):
        run_cli(bug)
    with pytest.raises(KeyError):
        run_cli(lambda: {}["missing"])


def test_project_errors_share_one_base():
    """Every error class the project raises for bad input derives from cli.UserError."""
    from anomaly.video import VideoError
    from cli import UserError
    from data import DataError
    from losses import PerceptualWeightsError

    for cls in (VideoError, DataError, PerceptualWeightsError):
        assert issubclass(cls, UserError), cls


def test_output_dir_names_the_flag(tmp_path):
    from cli import UserError, output_dir

    f = tmp_path / "a_file"
    f.write_text("x")
    assert output_dir(str(tmp_path / "new" / "deep")) == str(tmp_path / "new" / "deep")
    with pytest.raises(UserError, match="--model-out .*cannot create"):
        output_dir(str(f / "sub"), "--model-out")


def test_seed_arg_takes_what_every_generator_takes():
    import argparse

    import numpy as np

    from cli import SEED_MAX, seed_arg

    assert seed_arg("0") == 0 and seed_arg(str(SEED_MAX)) == 2**32 - 1
    np.random.seed(seed_arg(str(SEED_MAX)))  # the bounds are NumPy's own
    np.random.default_rng(seed_arg("0"))
    for bad in ("-1", str(2**32), "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {bad!r}"):
            seed_arg(bad)
    with pytest.raises(ValueError):
        np.random.seed(2**32)  # one past the bound is NumPy's error too


@pytest.mark.parametrize("module,argv", [
    ("predict", ["README.md"]),
    ("anomaly.train", ["--videos", "none/*.mp4", "--out", "OUT"]),
    ("anomaly.evaluate", ["--model", "none", "--videos", "none/*.mp4", "--out", "OUT"]),
    ("anomaly.calibrate", ["--model", "none", "--videos", "none/*.mp4"]),
    ("anomaly.train", ["--videos", "README.md", "--out", "OUT", "--lr", "-1"]),
    ("anomaly.detect", ["--model", "none", "--source", "README.md", "--out", "OUT"]),
    ("anomaly.evaluate", ["--model", "none", "--videos", "README.md", "--out", "OUT"]),
    ("evaluate", ["--horizon", "0"]),
    ("evaluate", ["--data", "x.npy", "--subpixel-offset", "0.5"]),
])
def test_a_bad_path_or_flag_fails_before_keras_loads(module, argv, tmp_path):
    """Keras takes seconds to import: a typo in a path or a flag should not wait for it."""
    import subprocess
    import sys

    code = ("import importlib, sys; rc = importlib.import_module(sys.argv[1]).main(sys.argv[2:]); "
            "print('keras' in sys.modules); sys.exit(rc)")
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    r = subprocess.run([sys.executable, "-c", code, module, *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stdout.strip() == "False", (r.stdout, r.stderr)
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("module,command", [
    ("train", "python train.py"), ("evaluate", "python evaluate.py"), ("predict", "python predict.py"),
    ("eda", "python eda.py"), ("plots", "python plots.py"), ("anomaly.train", "python -m anomaly.train"),
    ("anomaly.detect", "python -m anomaly.detect"), ("anomaly.evaluate", "python -m anomaly.evaluate"),
    ("anomaly.calibrate", "python -m anomaly.calibrate"), ("anomaly.synthetic", "python -m anomaly.synthetic")])
def test_every_command_names_itself_in_usage_errors(module, command, capsys):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main(["--no-such-flag"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and f"(see {command} --help)" in err, err


def test_progress_bars_only_on_a_terminal(monkeypatch):
    import sys

    from cli import progress

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert progress(10, "clips") is None
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    bar = progress(10, "clips")
    assert bar is not None and bar.target == 10


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_every_flag_is_described_with_its_default(module, monkeypatch):
    """`--help` describes every flag; a flag with a default says what it is."""
    import argparse
    import importlib

    parsers = []

    def capture(self, *args, **kwargs):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        importlib.import_module(module).main([])
    actions = [a for a in parsers[0]._actions if a.dest != "help" and a.help != argparse.SUPPRESS]  # not renamed ones
    assert not [a.dest for a in actions if not a.help], "flags without help"
    unsaid = [a.dest for a in actions if a.option_strings and a.default not in (None, False) and "default" not in a.help]
    assert not unsaid, f"defaults not said: {unsaid}"


def test_loaders_turn_bad_files_into_errors_and_keep_bugs(tmp_path, monkeypatch):
    """What a bad file raises is one InputError; a failure of another kind (a bug)
    keeps its type and traceback."""
    import keras

    import losses
    import model
    from cli import InputError, is_fetch_failure
    from config import ModelConfig

    path = str(tmp_path / "m.keras")
    model.build_model(ModelConfig(filters=(2, 2, 2), patch_size=4)).save(path)
    (tmp_path / "cut.keras").write_bytes(open(path, "rb").read()[:3000])
    with pytest.raises(InputError, match="exists but is not a readable Keras archive"):
        model.load_predictor(str(tmp_path / "cut.keras"))

    def bug(*a, **k):
        raise RuntimeError("a bug inside the loader")

    monkeypatch.setattr(keras.saving, "load_model", bug)
    with pytest.raises(RuntimeError, match="a bug inside"):
        model.load_predictor(path)
    # keras.utils.get_file reports a failed download as a bare Exception
    assert is_fetch_failure(Exception("URL fetch failure")) and is_fetch_failure(OSError("h5py"))
    assert not is_fetch_failure(RuntimeError("bug")) and not is_fetch_failure(KeyError("bug"))
    monkeypatch.setattr(keras.applications, "VGG16", bug)
    with pytest.raises(RuntimeError, match="a bug inside"):
        losses.build_vgg_features(None)


@pytest.mark.parametrize("text,msg", [
    ("[1, 2]", "expected an object"),
    ('{"model": [64]}', "config model: expected an object"),
    ('{"model": {"filters": 64}}', "filters must be a list"),
    ('{"train": {"lr": 1e-3, "lrr": 2}}', r"unknown keys \['lrr'\]"),
])
def test_a_malformed_config_json_is_one_input_error(tmp_path, text, msg):
    from cli import InputError
    from config import Config

    p = tmp_path / "config.json"
    p.write_text(text)
    with pytest.raises(InputError, match=msg):
        Config.load(str(p))


@pytest.mark.parametrize("change,msg", [
    ({"features": [64]}, "features: expected an object"),
    ({"features": {"frame_sise": 64}}, r"features: unknown keys \['frame_sise'\]"),
    ({"normalizer": "mean"}, "normalizer needs"),
    ({"autoencoder": {"encoder": 8}}, "encoder must be a list"),
])
def test_a_malformed_detector_json_is_one_input_error(change, msg):
    from anomaly.config import DetectorConfig
    from anomaly.features import FeatureConfig
    from cli import InputError

    good = {"features": FeatureConfig().to_dict(), "normalizer": {"mean": [0, 0, 0], "std": [1, 1, 1]},
            "window": 4, "threshold": 1.0}
    assert DetectorConfig.from_dict(good).window == 4
    with pytest.raises(InputError, match=msg):
        DetectorConfig.from_dict({**good, **change}, "x/detector.json")
