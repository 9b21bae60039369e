"""House style that CI enforces: ruff (config in pyproject.toml) is clean on the code we write, and
pyproject.toml declares what the code imports."""

import re
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


def test_every_imported_package_is_declared_in_pyproject():
    """pyproject.toml's dependencies name every third-party distribution that src/pinnacle imports
    (a missing one installs by luck, as a dependency of another, until it does not)."""
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    root = REPO
    declared = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = packages_distributions()
    missing = {}
    for path in (root / "src" / "pinnacle").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top == "pinnacle" or top in sys.stdlib_module_names:
                    continue
                found = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not found & declared:
                    missing.setdefault(top, set()).add(path.name)
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
