"""Run-folder I/O: the JSON reports and CSV training logs every entry point
writes and reads, each written to a temporary file and renamed (a kill never
leaves one half-written)."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import shutil
import tempfile

import numpy as np

from cli import InputError


def write_json(obj, path):
    """`obj` as indented JSON at `path`, written then renamed."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
    return path


def save_network(net, path):
    """A Keras network saved at `path` (a .keras archive), written under a
    temporary name in the same folder, then renamed."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name[:-len('.keras')]}.tmp{os.getpid()}.keras")
    net.save(tmp)
    os.replace(tmp, path)
    return path


def read_log(path) -> dict:
    """A Keras CSVLogger file as {column: float array}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"{path}: empty training log")
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
            for k in rows[0]}


def check_replace(out: str, marker: str, overwrite: bool, flag: str = "--out") -> None:
    """Before any work: `out` must be writable, and if it already holds a finished
    set of outputs (its `marker` file), replacing it needs `overwrite`."""
    from cli import output_dir

    output_dir(out, flag, create=False)
    if os.path.exists(os.path.join(out, marker)) and not overwrite:
        raise InputError(f"{out} already holds {marker} (earlier results); pass --overwrite to replace them, "
                         f"or another {flag}")


@contextlib.contextmanager
def output_set(out: str, patterns: tuple):
    """Writes a folder's outputs as one set: the body writes into a staging folder
    (yielded); when it ends without error, the files of the previous set (those
    matching `patterns` in `out`) are removed and the new ones moved in. A body
    that fails leaves `out` as it was."""
    from cli import output_dir

    output_dir(out)
    stage = tempfile.mkdtemp(prefix=".staging-", dir=out)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for pattern in patterns:
        for old in glob.glob(os.path.join(out, pattern)):
            if os.path.isfile(old):
                os.remove(old)
            else:
                shutil.rmtree(old)
    for name in os.listdir(stage):
        os.replace(os.path.join(stage, name), os.path.join(out, name))
    os.rmdir(stage)
