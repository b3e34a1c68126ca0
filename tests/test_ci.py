"""The CI script's own inputs: a test file named in a selection that does
not exist makes pytest stop with "file not found" in the guest, after the
host run and a kernel boot (an hour into CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.host_only]


def test_the_6_12_selection_names_test_files_that_exist():
    names = (ROOT / ".ci" / "subset-6.12").read_text().split()
    assert names, "empty selection"
    missing = [n for n in names if not (ROOT / n).is_file() or not n.startswith("tests/test_")]
    assert not missing, missing
    # joined into one line: a newline inside PYTEST_ARGS ends make's
    # recipe line, and the shell then runs the next file name as a command
    assert 'PYTEST_ARGS="-ra $(xargs < .ci/subset-6.12)"' in (ROOT / ".ci" / "run").read_text()
