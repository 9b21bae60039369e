"""House style that CI enforces: ruff (config in pyproject.toml) is clean on the code we write."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: it is pinned in envs/lock.txt (make venv installs it)")
    proc = subprocess.run([ruff, "check", "--no-cache", "src", "tests", "tools", "workflow/scripts", "resources"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
