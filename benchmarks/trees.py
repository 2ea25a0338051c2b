"""The other trees a benchmark measures this one against: a directory, or a commit of this checkout.

``--baseline-tree`` / ``--reference-tree`` take either. A commit is archived (``git archive``) into a
temporary directory once per process and removed when the process exits, so a comparison with
the commit a target was set on is one command — no archive to make and clean up by hand.
"""

from __future__ import annotations

import argparse
import atexit
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

#: this checkout (the one this module is part of)
HERE = Path(__file__).resolve().parent.parent

_archived: dict[tuple[str, Path], Path] = {}


def tree(spec: str, repo: Path = HERE) -> Path:
    """``spec`` as a tree to measure: an existing directory as it is, else a git revision of the
    checkout ``repo``, archived into a temporary directory (removed at exit). ValueError in one
    line when it is neither."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    if (spec, repo) in _archived:
        return _archived[spec, repo]
    try:
        proc = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", f"{spec}^{{commit}}"],
                              capture_output=True, check=False)
    except FileNotFoundError:
        raise ValueError(f"{spec}: not a directory, and git is not installed to read it as a "
                         f"commit") from None
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"{spec}: neither a directory nor a commit of {repo} "
                         f"({said[-1] if said else 'git failed'})")
    # (a revision may name a branch: "origin/main" — no path separator in the directory's name)
    out = Path(tempfile.mkdtemp(prefix=f"regionblock-{re.sub(r'[^A-Za-z0-9._-]', '_', spec)[:24]}-"))
    atexit.register(shutil.rmtree, out, True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(out, filter="data")
    _archived[spec, repo] = out
    return out


def tree_arg(spec: str) -> Path:
    """:func:`tree` as an argparse ``type``: a bad value is one usage line and exit 2."""
    try:
        return tree(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
