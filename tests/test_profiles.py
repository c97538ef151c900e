"""Challenge profiles: score formulas, caps (FLOPs included), and the synthetic flow under each profile."""
from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch
from optuna.trial import TrialState

from results.report import write_report
from search import study as study_module
from search.study import objective as objective_module
from search.metrics import pair_accuracy
from search.profiles import PROFILES, get_profile
from search.study import FINISHED, Objective, StudyConfig, TrialRecord, create_study, default_storage_url, run_search
from space import SpaceConfig, build_model, count_flops, sample_spec
from space.sample import CapError

M1 = {"plcc": 0.8, "srcc": 0.7, "krcc": 0.5, "rmse": 0.4, "plcc_fit": 0.85, "pair_acc": 0.75}
M2 = {"plcc": -0.4, "srcc": -0.2, "krcc": -0.1, "rmse": 0.9, "plcc_fit": 0.3, "pair_acc": 0.4}


@pytest.mark.parametrize("name, metrics, expected", [
    ("icme2026-aigc", {"q": M1}, (0.8 + 0.7 + 0.5) / 3),
    ("icme2026-aigc", {"q": M2}, 0.0),
    ("vquala2025-fiqa", {"q": M1}, 0.75),
    ("siqa-s", {"perception": M1, "knowledge": M2}, (75.0 + 0.0) / 2),
    ("siqa-s", {"perception": M1, "knowledge": M1}, 75.0),
    ("ntire-pairwise", {"q": M1}, 0.75),
    ("aigiqa20k", {"q": M1}, (0.7 + 0.85) / 2),
])
def test_score_formulas_hand_computed(name, metrics, expected):
    assert get_profile(name).score(metrics) == pytest.approx(expected)


def test_pair_accuracy_on_mos_derived_pairs():
    assert pair_accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert pair_accuracy([3, 2, 1], [1, 2, 3]) == 0.0
    assert pair_accuracy([1, 1, 3], [1, 2, 3]) == pytest.approx((0.5 + 1 + 1) / 3)
    assert pair_accuracy([2, 1, 3], [1.0, 1.05, 3.0]) == pytest.approx(2 / 3)
    assert pair_accuracy([2, 1, 3], [1.0, 1.05, 3.0], min_gap=0.1) == 1.0  # the close pair is skipped


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ValueError, match="known profiles: aigiqa20k, icme2026-aigc"):
        get_profile("nope")


WHOLE_IMAGES = dataclasses.replace(SpaceConfig(), patches=(0,), fragments=(0,))
"""The default space without patches or fragments: a 3x3 grid of 128-256 px patches, or a deep stack on
a 224 px fragment view, often cannot shrink under 500 MFLOPs (such draws are refused as over the cap,
and the sampler learns to avoid them)."""


def test_vquala_caps_hold_for_every_sampled_spec_as_built(built_params, measured_flops):
    caps = get_profile("vquala2025-fiqa").caps
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    no_mscn = dataclasses.replace(WHOLE_IMAGES, mscn=(False,))  # MSCN does not run on the meta device
    built = 0
    for _ in range(40):
        trial = study.ask()
        try:
            spec = sample_spec(trial, no_mscn, caps)
        except CapError:  # a draw no width fits (e.g. a 384 px stack at stride 1): refused, never built
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        with torch.device("meta"):  # shapes are all the hooks read
            flops = sum(measured_flops(build_model(spec), spec.input.crop).values())
        assert built_params(spec) <= 5_000_000 and flops == count_flops(spec) and flops <= 500_000_000
        study.tell(trial, 0.0)
        built += 1
    assert built >= 30


def test_spec_over_the_flops_cap_is_never_trained(tmp_path, monkeypatch):
    # A space whose narrowest model is over 0.5 GFLOPs: every trial must end before anything is built.
    monkeypatch.setitem(study_module.SPACE_PRESETS, "huge", lambda: SpaceConfig(
        resizes=(1024,), crop_fractions=(1.0,), stem_kinds=("conv",), stages=(5, 5), depths=(4, 4),
        blocks=("residual",), widths=(256,)))
    monkeypatch.setattr(objective_module, "build_model", lambda spec: pytest.fail(f"built an over-cap spec {spec}"))
    cfg = StudyConfig(profile="vquala2025-fiqa", space="huge", n_synthetic=40, device="cpu", cache_dir=str(tmp_path))
    study = create_study(cfg, "huge", default_storage_url(tmp_path))
    study.optimize(Objective(cfg, tmp_path), n_trials=2)
    records = [TrialRecord.from_trial(t) for t in study.trials]
    assert all(r.state == TrialState.PRUNED and "cannot fit the caps" in r.over_cap for r in records)


@pytest.mark.parametrize("name, extra", [
    ("icme2026-aigc", {}),
    ("vquala2025-fiqa", {}),
    ("siqa-s", {"targets": ["mos", "align"]}),
    ("ntire-pairwise", {}),
    ("aigiqa20k", {}),
])
def test_each_profile_runs_the_synthetic_flow(tmp_path, name, extra):
    profile = get_profile(name)
    cfg = StudyConfig(profile=name, space="tiny", n_synthetic=200, max_epochs=2, early_stop=False, device="cpu",
                      cache_dir=str(tmp_path / "cache"), **extra)
    study = run_search(cfg, name, 2, tmp_path / name, progress=False)
    records = [TrialRecord.from_trial(t) for t in study.get_trials(states=FINISHED)]
    assert len(records) == 2
    for r in records:
        assert r.params <= profile.caps.params
        assert profile.caps.flops is None or r.flops <= profile.caps.flops
        assert r.values[0] == pytest.approx(profile.score(r.target_metrics))
        assert len(r.target_metrics) == len(cfg.targets or ["mos"])
        assert (r.test_score is not None) == (profile.test_fraction > 0)
    ranked = write_report(study, profile, tmp_path / name / "report")
    assert len(ranked) == 2
    if name == "siqa-s":
        assert {"mos_srcc", "align_srcc"} <= set(ranked.columns)


def test_profiles_are_listed_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in PROFILES)
