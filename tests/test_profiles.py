"""Snakemake profiles (profiles/*/config.yaml) against the workflow they configure.

A `set-resources` entry for a rule that does not exist is silently ignored by Snakemake (the
slurm profile once named `integrate_scvi`, so scVI never reached a GPU), hence these checks.
The rule and GPU checks read the rule files as text (milliseconds, independent of the config);
one dry run checks the resources Snakemake itself resolves under profiles/slurm.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.parent.name for p in (REPO / "profiles").glob("*/config.yaml"))
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
#: a rule (or checkpoint) header; rules may sit inside `if RUN.demo:` blocks, hence the indent
RULE_HEADER = re.compile(r"^[ \t]*(?:rule|checkpoint)[ \t]+(\w+)[ \t]*:", re.MULTILINE)


def _profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text()) or {}


def _rule_bodies() -> dict[str, str]:
    """Rule name -> its text (up to the next rule header or the end of the file)."""
    bodies = {}
    for path in RULE_FILES:
        text = path.read_text()
        heads = list(RULE_HEADER.finditer(text))
        for head, nxt in zip(heads, [*heads[1:], None]):
            bodies[head.group(1)] = text[head.end():nxt.start() if nxt else len(text)]
    return bodies


def _gpu_rules() -> set[str]:
    """Rules whose resources declare `gpu=` (scVI, totalVI...: `gpu=1 if CFG["gpu"] ...`)."""
    return {name for name, body in _rule_bodies().items() if re.search(r"^\s*gpu\s*=", body, re.MULTILINE)}


def test_rule_names_are_parsed():
    rules = _rule_bodies()
    assert {"all", "qc_sample", "integrate", "protein_totalvi", "simulate_demo_cohort"} <= set(rules)
    # integrate must be found as a GPU rule, or the GPU tests below would pass on nothing
    assert "integrate" in _gpu_rules()


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_names_only_existing_rules(profile):
    """Every rule a profile sets resources or threads for exists (a typo is ignored silently)."""
    rules = set(_rule_bodies())
    cfg = _profile(profile)
    for key in ("set-resources", "set-threads"):
        unknown = set(cfg.get(key) or {}) - rules
        assert not unknown, f"profiles/{profile}: {key} names rules that do not exist: {sorted(unknown)}"


def test_gpu_rules_get_a_gpu_on_slurm():
    """Under profiles/slurm every GPU rule goes to the GPU partition and asks the plugin for a
    GPU: `gpu: N` (sbatch --gpus=N) or `gres: gpu:N` (--gres), never both (the plugin refuses)."""
    slurm = _profile("slurm")
    default_partition = (slurm.get("default-resources") or {}).get("slurm_partition")
    set_resources = slurm.get("set-resources") or {}
    for rule in sorted(_gpu_rules()):
        res = set_resources.get(rule) or {}
        partition = res.get("slurm_partition")
        assert partition and partition != default_partition, \
            f"{rule}: set-resources must send it to the GPU partition (has {partition!r})"
        gpu, gres = res.get("gpu"), str(res.get("gres") or "")
        assert (gpu and int(gpu) >= 1) != ("gpu" in gres), \
            f"{rule}: set-resources needs exactly one of gpu: N or gres: gpu:N (has {res})"


def test_cpu_rules_stay_off_the_gpu_partition():
    """Only GPU rules are sent to the GPU partition: a CPU job there would hold a GPU node."""
    slurm = _profile("slurm")
    gpu_partitions = {r.get("slurm_partition") for r in (slurm.get("set-resources") or {}).values()} - {
        (slurm.get("default-resources") or {}).get("slurm_partition")}
    for rule, res in (slurm.get("set-resources") or {}).items():
        if res.get("slurm_partition") in gpu_partitions:
            assert rule in _gpu_rules(), f"{rule} is sent to a GPU partition but declares no gpu resource"


def _merged_config(path: Path, **top) -> Path:
    """config/config.yaml + the tiny demo overlay + top-level overrides, nested as snakemake
    merges a --configfile."""
    def merge(base, over):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    cfg = merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                yaml.safe_load((REPO / ".test" / "config_demo" / "config.yaml").read_text()))
    cfg = merge(cfg, top)
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_slurm_profile_resources_as_snakemake_resolves_them(tmp_path):
    """Dry run with profiles/slurm (and totalVI on): each GPU job's resolved resources carry the
    GPU partition and gpu=1, with gpu: false in the config too (the profile decides on SLURM),
    and CPU jobs the default partition. ~10 s: parses the whole workflow once."""
    cfg = _merged_config(tmp_path / "config.yaml", protein={"totalvi": True})
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(cfg), "--profile", str(REPO / "profiles" / "slurm"), "--dry-run",
         # threads are capped by --cores (profiles/default: this machine's count)
         "--cores", "16"],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    jobs = {m.group(1): m.group(2) for m in re.finditer(r"^rule (\w+):\n(.*?)(?:\n\n|\Z)", out, re.S | re.M)}
    gpu_rules = _gpu_rules() & set(jobs)
    assert {"integrate", "protein_totalvi"} <= gpu_rules
    for rule in gpu_rules:
        assert re.search(r"slurm_partition=gpu\b", jobs[rule]) and re.search(r"\bgpu=1\b", jobs[rule]), \
            f"{rule}: {jobs[rule]}"
        assert re.search(r"threads: 8\b", jobs[rule]), f"{rule}: set-threads not applied: {jobs[rule]}"
    assert "slurm_partition=cpu" in jobs["qc_sample"] and "gpu=" not in jobs["qc_sample"]
