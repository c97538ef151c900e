"""Shared fixtures: one tiny finished study on the synthetic set, made once per test session."""
from __future__ import annotations

import pytest

from search.study import StudyConfig, run_search


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """(study, config, run_dir) of a 3-trial study of tiny models on 64 px synthetic images."""
    root = tmp_path_factory.mktemp("tiny-study")
    cfg = StudyConfig(space="tiny", n_synthetic=240, max_epochs=3, trial_budget_s=1000.0, early_stop=False,
                      device="cpu", cache_dir=str(root / "cache"))
    run_dir = root / "runs" / "tiny"
    study = run_search(cfg, "tiny", 3, run_dir, progress=False)
    return study, cfg, run_dir
