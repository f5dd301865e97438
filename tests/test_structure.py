"""Dependencies point from entry points to library modules, never the other way."""

import ast
import os

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
