"""Dependencies point from entry points to library modules, never the other way."""

import ast
import os

import pytest

from conftest import ROOT

ENTRY_POINTS = {"train", "evaluate", "predict", "eda", "anomaly.detect", "anomaly.evaluate",
                "anomaly.calibrate", "anomaly.train", "anomaly.synthetic"}


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
    actions = [a for a in parsers[0]._actions if a.dest != "help"]
    assert not [a.dest for a in actions if not a.help], "flags without help"
    unsaid = [a.dest for a in actions if a.option_strings and a.default not in (None, False) and "default" not in a.help]
    assert not unsaid, f"defaults not said: {unsaid}"
