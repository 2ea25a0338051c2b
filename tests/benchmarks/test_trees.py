"""benchmarks.trees: a directory as it is, a commit archived as it was committed, one line else."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.trees import tree, tree_arg

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two commits of sim/x.py: (its path, first commit, second commit)."""
    root = tmp_path / "repo"
    (root / "sim").mkdir(parents=True)
    _git(root, "init", "-q")
    (root / "sim" / "x.py").write_text("A = 1\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    first = _git(root, "rev-parse", "HEAD")
    (root / "sim" / "x.py").write_text("A = 2\n")
    _git(root, "commit", "-q", "-am", "two")
    return root, first, _git(root, "rev-parse", "HEAD")


def test_a_commit_is_its_tree_as_committed(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    old = tree(first[:7], root)
    assert (old / "sim" / "x.py").read_text() == "A = 1\n"
    assert (tree(second, root) / "sim" / "x.py").read_text() == "A = 2\n"
    assert tree(first[:7], root) == old            # archived once per process
    assert not (old / ".git").exists()


def test_a_branch_with_a_slash_is_its_commit(repo: tuple[Path, str, str]) -> None:
    root, first, _ = repo
    _git(root, "branch", "topic/one", first)
    assert (tree("topic/one", root) / "sim" / "x.py").read_text() == "A = 1\n"


def test_a_directory_is_itself(tmp_path: Path) -> None:
    assert tree(str(tmp_path)) == tmp_path.resolve()


def test_neither_is_one_line_naming_it(repo: tuple[Path, str, str]) -> None:
    root, _, _ = repo
    with pytest.raises(ValueError) as err:
        tree("no-such-rev", root)
    message = str(err.value)
    assert message.startswith(f"no-such-rev: neither a directory nor a commit of {root} (")
    assert "\n" not in message
    with pytest.raises(argparse.ArgumentTypeError, match=r"^no-such-rev: neither"):
        tree_arg("no-such-rev")
