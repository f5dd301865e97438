"""Command-line plumbing shared by every entry point: the project's errors, the
error contract, and an argparse that reports usage errors in one line.

The contract: an entry point calls `run_cli(body)`. A `UserError` (bad input or
setup, raised anywhere in the project; `InputError` is also a `ValueError` for
Python callers) becomes one `error: ...` line on stderr and exit code 2. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys


class UserError(Exception):
    """Bad input or setup: the base of the project's own errors."""


class InputError(UserError, ValueError):
    """A value, file or folder the user gave is invalid (also a ValueError)."""


def run_cli(body) -> int:
    """Calls `body()`; a `UserError` becomes one `error:` line and exit code 2."""
    try:
        body()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def entry(parse_args, body):
    """An entry point's `main(argv=None) -> exit code`: parses the command line
    with `parse_args` and runs `body(args)` under the error contract."""

    def main(argv=None) -> int:
        args = parse_args(argv)
        return run_cli(lambda: body(args))

    return main


class CliParser(argparse.ArgumentParser):
    """argparse for an entry point: its module docstring as the description,
    `prog` as the command a user types (so usage and errors name it), and a
    usage error as one `error:` line (and exit code 2)."""

    def __init__(self, doc: str, prog: str):
        super().__init__(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def add_renamed(self, old: str, new: str) -> None:
        """Keeps flag `old`, now called `new` (already added), working for one more
        release: hidden from --help, same value type and choices, and one
        deprecation line on stderr when used."""
        target = next(a for a in self._actions if new in a.option_strings)
        self.add_argument(old, dest=target.dest, type=target.type, choices=target.choices,
                          action=_Renamed, new=new, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _Renamed(argparse.Action):
    """Stores the value of a renamed flag under its new name's dest, and says so."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is now called {self.new}; the old name will be removed "
              "in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


SEED_MAX = 2**32 - 1  # NumPy's legacy seeding (keras.utils.set_random_seed) takes [0, 2**32 - 1]


def seed_arg(text: str) -> int:
    """argparse type of a --seed flag: an integer in [0, SEED_MAX], which every
    generator the project seeds accepts (NumPy's default_rng refuses negatives,
    its legacy seeding anything past 2**32 - 1)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text!r}")
    return value


def output_dir(path: str, flag: str = "--out", create: bool = True) -> str:
    """Checks that the output folder `path` can be written, and creates it (with
    `create`); a `UserError` naming `flag` otherwise. With `create=False` nothing is
    made: a folder that does not exist yet needs a writable nearest existing
    parent (for checks made before any work). Returns `path`."""
    if not create:
        probe = os.path.abspath(path)
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
            raise UserError(f"{flag} {path}: cannot create or write it ({probe} is not a writable folder)")
        return path
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot create the folder ({e.strerror})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable")
    return path


def progress(total: int, unit: str):
    """A Keras progress bar for a long step, on a terminal only (None when the
    output goes to a file or a pipe, so logs stay quiet)."""
    if not sys.stdout.isatty():
        return None
    import keras

    return keras.utils.Progbar(total, unit_name=unit)


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most `limit` characters (for
    one `error:` line instead of a page of framework text)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def is_fetch_failure(e: BaseException) -> bool:
    """Whether `e` is how `keras.utils.get_file` (and the loaders built on it, such as
    `keras.applications.VGG16`) reports a file it could not fetch or read: a bare
    `Exception` wrapping urllib's error for a failed download, a ValueError for a
    wrong hash or a weights file of the wrong shape, an OSError for a file h5py
    cannot read. Anything else is a bug and should keep its traceback."""
    return type(e) is Exception or isinstance(e, (OSError, ValueError))
