"""Session-wide simulated cohorts: each distinct cohort is simulated once per test session and
shared by the modules that ask for it (simulating is cheap; building the same cohort in every
module is not)."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist two workers (and the workflow's jobs they start, which inherit this
# environment) share the cores: OpenMP threads that spin while waiting (torch's default) then
# starve each other (the CPU scVI test took 501 s instead of 87 s). Waiting threads sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

#: the small cohort most unit tests share: 2 patients (1 responder) x 2 timepoints x 1,500
#: droplets, 20 scDNA cells per sample, interferon-off twins of the resection samples
SMALL_COHORT = dict(n_patients=2, n_responders=1, cells_per_sample=1500, dna_cells_per_sample=20, seed=11,
                    interferon_twin=True)


@pytest.fixture(scope="session")
def simulated_cohort(tmp_path_factory):
    """``simulated_cohort(**options) -> Path``: the cohort ``pinnacle.simulate.simulate_cohort``
    writes with these options, simulated on first request and reused for the session. Treat
    it as read-only."""
    from pinnacle.simulate import simulate_cohort

    made: dict[tuple, Path] = {}

    def get(**options) -> Path:
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in made:
            out = tmp_path_factory.mktemp("cohort") / "c"
            simulate_cohort(out, **options)
            made[key] = out
        return made[key]

    return get


@pytest.fixture(scope="session")
def small_cohort(simulated_cohort) -> Path:
    """The shared small cohort (:data:`SMALL_COHORT`)."""
    return simulated_cohort(**SMALL_COHORT)


#: the test file that runs the whole workflow twice (~12 minutes): collected first, so that under
#: pytest-xdist (``make test``: ``-n auto --dist loadfile``) it starts at once on its own worker
#: while the unit tests fill the other cores, instead of starting last (at 4c6dc62 it started
#: last: 27 min); test_slurm (2-4 min) ahead of it on the same worker delayed it by 4 min
LONG_FILES = ("test_workflow.py",)


def pytest_collection_modifyitems(config, items):
    """The end-to-end files first; the order inside each file is kept (stable sort)."""
    items.sort(key=lambda item: 0 if item.path.name in LONG_FILES else 1)
