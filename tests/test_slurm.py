"""A few jobs through a real SLURM: a throw-away single-node cluster on this machine
(tools/slurm/start.sh: munged, slurmctld and slurmd started by hand, one fake GPU), driven by
`--profile profiles/slurm --profile profiles/slurm-test`.

Kept to three jobs, because every job costs a snakemake start inside the job and seconds of
status polling. Three runs at once (most of a SLURM run is waiting):
- SLURM: the demo simulation and one sample's QC, whose outputs must equal
- local: the same targets with `--cores 2`;
- GPU: `integrate` alone in a folder holding only a placeholder of its input (missing upstream
  files do not make snakemake rerun an existing output), the cheapest way to see a GPU rule's
  sbatch request (`scontrol show job`: gpu partition, gres gpu:1) without training scVI: the job
  starts on the node and fails reading the placeholder.
Skipped without Debian's SLURM packages, without root, or when the daemons do not start (the
reason is in the skip message).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import yaml

from pinnacle.config import merge as merge_config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SAMPLE = "P01_baseline"
QC_TARGET = f"results/rna/{SAMPLE}/qc.tsv"
#: outputs compared with the local run: tables byte for byte, the matrix by value
TABLES = [QC_TARGET, f"results/rna/{SAMPLE}/cells.tsv.gz", "demo/truth/cells.tsv.gz"]
pytestmark = pytest.mark.slow




def _config(workdir: Path) -> Path:
    """config/config.yaml + the tiny demo (.test/config_demo), with fewer cells: QC of one sample
    is the longest job."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = merge_config(cfg, yaml.safe_load((REPO / ".test" / "config_demo" / "config.yaml").read_text()))
    cfg = merge_config(cfg, {"demo": {"cells_per_sample": 300, "dna_cells_per_sample": 20}})
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class _Run:
    """A snakemake process started in ``workdir`` (targets first: options such as --configfile
    take every word after them), its output in ``workdir/snakemake.out``."""

    def __init__(self, workdir: Path, env: dict, targets: list[str], *args: str):
        self.workdir = workdir
        cmd = SNAKEMAKE + [*targets, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "--configfile", str(_config(workdir)), *args]
        self._out = open(workdir / "snakemake.out", "w")
        self._start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, text=True,
                                     env=dict(env, PYTHONHASHSEED="0"), cwd=workdir)

    def done(self, deadline: float) -> bool:
        """Whether it has ended (killed past ``deadline``, a time.monotonic()); then its
        returncode, seconds and log are set."""
        if self.proc.poll() is None and time.monotonic() < deadline:
            return False
        if self.proc.poll() is None:
            self.proc.kill()
        if not hasattr(self, "seconds"):
            self.returncode = self.proc.wait()
            self.seconds = time.monotonic() - self._start
            self._out.close()
            self.log = (self.workdir / "snakemake.out").read_text()
        return True


SLURM_PROFILES = ("--profile", str(REPO / "profiles" / "slurm"), "--profile", str(REPO / "profiles" / "slurm-test"))


@pytest.fixture(scope="module")
def slurm_env():
    """Environment (SLURM_CONF) of a started test cluster; every daemon stopped afterwards."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    missing = [b for b in ("sbatch", "squeue", "scontrol", "slurmctld", "slurmd", "munged")
               if not shutil.which(b, path=path)]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} not on PATH): "
                    "apt-get install slurmctld slurmd slurm-client munge")
    if os.geteuid() != 0:
        pytest.skip("slurmd has to run as root to start jobs")
    # Short folder under /tmp: munged's socket path must stay under 108 characters.
    folder = Path(tempfile.mkdtemp(prefix="pinnacle-slurm.", dir="/tmp"))
    env = dict(os.environ, PATH=path)
    proc = subprocess.run([str(REPO / "tools" / "slurm" / "start.sh"), str(folder)], capture_output=True,
                          text=True, env=env, timeout=120)
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"SLURM daemons did not start (tools/slurm/start.sh rc={proc.returncode}): "
                    f"{proc.stderr.strip()[-1500:]}")
    env["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield env
    finally:
        subprocess.run([str(REPO / "tools" / "slurm" / "stop.sh"), str(folder)], env=env, timeout=60)


@pytest.fixture(scope="module")
def runs(slurm_env, tmp_path_factory):
    """The SLURM, local and GPU runs (see the module's docstring), each in its own folder, timed."""
    folders = {name: tmp_path_factory.mktemp(f"{name}_run") for name in ("slurm", "local", "gpu")}
    (folders["gpu"] / "results" / "cohort").mkdir(parents=True)
    (folders["gpu"] / "results" / "cohort" / "rna.h5ad").write_text("placeholder, not an h5ad\n")
    started = {"slurm": _Run(folders["slurm"], slurm_env, [QC_TARGET], *SLURM_PROFILES),
               "gpu": _Run(folders["gpu"], slurm_env, ["results/cohort/integrated.h5ad"], *SLURM_PROFILES),
               "local": _Run(folders["local"], slurm_env, [QC_TARGET], "--cores", "2")}
    deadline = time.monotonic() + 900
    while not all([run.done(deadline) for run in started.values()]):
        time.sleep(1)
    done = started
    print("\n" + ", ".join(f"{name} run {run.seconds:.0f} s" for name, run in done.items()))
    assert done["local"].returncode == 0, done["local"].log[-4000:]
    return dict(done, env=slurm_env)


def _job_ids(run: _Run) -> dict[str, str]:
    """Rule -> SLURM job id, from snakemake's log ("... submitted with SLURM jobid N (log: .../rule_R/...")."""
    log = run.log
    return {rule: jobid for jobid, rule in
            re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", log)}


def _scontrol(runs, jobid: str) -> str:
    return subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True,
                          env=runs["env"], check=True).stdout


def _explain(runs, name: str = "slurm") -> str:
    """A run's log tail and slurmctld's, for a failed assertion."""
    ctld = Path(runs["env"]["SLURM_CONF"]).parent / "log" / "slurmctld.log"
    tail = ctld.read_text()[-2000:] if ctld.exists() else ""
    return f"{runs[name].log[-5000:]}\n--- slurmctld.log ---\n{tail}"


def test_jobs_went_through_slurm(runs):
    assert runs["slurm"].returncode == 0, _explain(runs)
    jobs = _job_ids(runs["slurm"])
    assert set(jobs) == {"simulate_demo_cohort", "qc_sample"}, _explain(runs)
    # squeue keeps finished jobs for MinJobAge (start.sh: 1 h); no accounting database here
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%P|%T"], capture_output=True,
                           text=True, env=runs["env"], check=True).stdout
    states = {line.split("|")[0]: line.split("|")[1:] for line in queue.split()}
    for rule, jobid in jobs.items():
        assert states.get(jobid) == ["cpu", "COMPLETED"], (rule, states, _explain(runs))
        assert "JobState=COMPLETED" in _scontrol(runs, jobid)
    # the job's SLURM log: the rule ran inside the allocation (jobstep executor)
    slurm_logs = runs["slurm"].workdir / ".snakemake" / "slurm_logs"
    qc_log = next(slurm_logs.glob(f"rule_qc_sample/**/{jobs['qc_sample']}.log")).read_text()
    assert "rule qc_sample" in qc_log and SAMPLE in qc_log


def test_gpu_rule_requests_a_gpu(runs):
    """profiles/slurm's integrate entry reaches sbatch: the job sits in the gpu partition with one
    GPU (gres/gpu), and it ran there: it failed on the placeholder, not at submission."""
    gpu = runs["gpu"]
    jobs = _job_ids(gpu)
    assert set(jobs) == {"integrate"}, _explain(runs, "gpu")
    job = _scontrol(runs, jobs["integrate"])
    assert "Partition=gpu" in job, job
    assert re.search(r"(TresPerJob|TresPerNode|TRES)=\S*gres[:/]gpu[:=]1\b", job), job
    assert "JobState=FAILED" in job and gpu.returncode != 0, job
    log = (gpu.workdir / "logs" / "cohort" / "integrate.log").read_text()
    assert re.search(r"signature|not an h5ad|unable to .*open", log, re.IGNORECASE), log[-2000:]


def test_outputs_equal_a_local_run(runs):
    slurm_dir, local_dir = runs["slurm"].workdir, runs["local"].workdir
    for rel in TABLES:
        assert (slurm_dir / rel).read_bytes() == (local_dir / rel).read_bytes(), rel
    h5ad = f"results/rna/{SAMPLE}/rna.h5ad"
    a, b = ad.read_h5ad(slurm_dir / h5ad), ad.read_h5ad(local_dir / h5ad)
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    assert a.obs.equals(b.obs)
    dense = [m.toarray() if hasattr(m, "toarray") else np.asarray(m) for m in (a.X, b.X)]
    assert np.array_equal(*dense)
