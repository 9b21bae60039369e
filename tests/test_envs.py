"""The conda environment (envs/pinnacle.yaml) and the pinned pip files name the versions of the
lock (envs/lock.txt): `--software-deployment-method conda` users get the stack that was tested."""

import re
from pathlib import Path

import yaml

from pinnacle.export import canonical_name, pinned_packages

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
LOCK = pinned_packages(ENVS / "lock.txt")


def _pip_lines(lines: list[str], folder: Path, seen: set[Path]) -> list[tuple[str, str]]:
    """``(requirement, where)`` of pip lines, following ``-r file`` (relative to ``folder``, as
    conda and pip read them)."""
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(?:-r|--requirement)\s*(\S+)", line)
        if m:
            path = (folder / m.group(1)).resolve()
            assert path.is_file(), f"{line}: {path} does not exist"
            if path not in seen:
                seen.add(path)
                out += _pip_lines(path.read_text().splitlines(), path.parent, seen)
        elif not line.startswith("-"):  # -e .., -c constraints, --index-url: not package pins
            out.append((line, str(folder)))
    return out


def _conda_env(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    env = yaml.safe_load(path.read_text())
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += _pip_lines(dep.get("pip", []), path.parent, set())
        else:
            conda.append(dep)
    return conda, pip


def test_lock_pins_every_line():
    lines = [x for x in (ENVS / "lock.txt").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert len(LOCK) == len(lines) > 50
    assert "torch" in LOCK


def test_conda_env_names_the_lock_versions():
    for path in sorted(ENVS.glob("*.yaml")):
        conda, pip = _conda_env(path)
        assert pip, f"{path.name}: no pip packages"
        wrong, unpinned = [], []
        for req, where in pip:
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(\S+)", req)
            if not m:
                unpinned.append(f"{req} ({where})")
            elif LOCK.get(canonical_name(m.group(1))) != m.group(2):
                wrong.append(f"{req}: lock has {LOCK.get(canonical_name(m.group(1)), 'nothing')}")
        assert not unpinned, f"{path.name}: not pinned with ==: {unpinned}"
        assert not wrong, f"{path.name}: versions differ from envs/lock.txt: {wrong}"
        # every package of the lock is installed (the same stack, not only its top level)
        named = {canonical_name(re.split(r"[=<>\[ ]", req, maxsplit=1)[0]) for req, _ in pip}
        assert set(LOCK) <= named, f"{path.name} lacks {sorted(set(LOCK) - named)[:10]}"
        # Python: the lock's (its header says which it was frozen on)
        lock_python = re.search(r"Python (\d+\.\d+)", (ENVS / "lock.txt").read_text()).group(1)
        pythons = [c for c in conda if re.match(r"python\b", c)]
        assert pythons == [f"python={lock_python}"], f"{path.name}: {pythons}, lock: Python {lock_python}"
        assert all(c in ("pip",) or c.startswith("python=") for c in conda), \
            f"{path.name}: conda packages outside the lock: {conda}"


def test_requirements_are_the_lock_versions():
    """envs/requirements.txt (the stack's top level, named in the run summary) pins each package
    at the lock's version."""
    reqs = _pip_lines((ENVS / "requirements.txt").read_text().splitlines(), ENVS, set())
    pins = pinned_packages(ENVS / "requirements.txt")
    assert len(pins) == len(reqs), f"unpinned: {[r for r, _ in reqs if '==' not in r]}"
    wrong = {name: (version, LOCK.get(name)) for name, version in pins.items() if LOCK.get(name) != version}
    assert not wrong, f"requirements.txt vs lock.txt: {wrong}"
