"""One idea, one place: a block family declared in one file (`tests/toy_family.py`) and registered
(`space.layers.register_family`) is validated, sampled by its traits, counted exactly, built, trained in a tiny
study, reloaded from its checkpoint and described by the report and the paper, with no other module edited."""
from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from results.paper import write_paper_kit
from results.report import write_report
from search.checkpoint import load_checkpoint
from search.profiles import get_profile
from search.study import SPACE_PRESETS, StudyConfig, TrialRecord, run_search
from space import ArchSpec, Caps, SpaceConfig, build_model, count_flops, count_params, sample_spec, spec_summary
from space.layers import BLOCK_FAMILIES, register_family
from space.spec import has_se
from toy_family import TOY

pytestmark = pytest.mark.usefixtures("one_thread")
TOY_SPACE = dataclasses.replace(SpaceConfig.tiny(), blocks=(TOY.name,))


@pytest.fixture(scope="module")
def toy():
    """The toy family, registered for this module's tests only."""
    register_family(TOY)
    yield TOY
    del BLOCK_FAMILIES[TOY.name]


def _sampled(n: int, seed: int = 0) -> list[tuple[ArchSpec, dict]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((sample_spec(trial, TOY_SPACE, Caps()), trial.params))
        study.tell(trial, 0.0)
    return out


def test_an_unregistered_family_is_refused_by_name():
    spec = {"input": {"resize": 32, "crop": 32}, "stem": {}, "stages": [{"block": "mbconv", "width": 8}]}
    ArchSpec.from_dict(spec)
    with pytest.raises(ValueError, match="stages\\[0\\].block: must be one of .*got 'nosuch'"):
        ArchSpec.from_dict({**spec, "stages": [{"block": "nosuch", "width": 8}]})
    with pytest.raises(ValueError, match="already registered"):
        register_family(BLOCK_FAMILIES["mbconv"])


def test_the_toy_family_is_sampled_by_its_traits_counted_exactly_and_built(toy, measured_flops):
    se_seen = set()
    for spec, params in _sampled(12):
        assert {s.block for s in spec.stages} == {TOY.name}
        for i, stage in enumerate(spec.stages):  # a kernel and SE are asked for, no expansion (it has none)
            assert f"s{i}_kernel" in params and f"s{i}_se" in params and f"s{i}_expansion" not in params
            se_seen.add(has_se(stage))
        summary = spec_summary(spec)
        assert f"{TOY.short}{spec.stages[0].width}x" in summary and "e4" not in summary
        model = build_model(spec)
        assert count_params(spec) == sum(p.numel() for p in model.parameters()), summary
        assert count_flops(spec) == sum(measured_flops(model, spec.input.crop).values()), summary
        for stage in model.blocks():
            for built in stage:
                assert built.family is TOY and built.family.widths(built.module)[0] == built.module.pw[0].out_channels
        assert ArchSpec.from_dict(spec.to_dict()) == spec
    assert se_seen == {False, True}


@pytest.fixture(scope="module")
def toy_study(toy, tmp_path_factory):
    """A 2-trial study of the tiny space with only the toy family (a space preset added for the test)."""
    root = tmp_path_factory.mktemp("toy-study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SPACE_PRESETS, "toy", lambda: TOY_SPACE)
        cfg = StudyConfig(space="toy", n_synthetic=120, max_epochs=2, trial_budget_s=1000.0, early_stop=False,
                          device="cpu", cache_dir=str(root / "cache"))
        study = run_search(cfg, "toy", 2, root / "runs" / "toy", workers=1, progress=False, seed_recipes=False)
        yield study, cfg, root / "runs" / "toy"


def test_a_tiny_study_trains_the_toy_family_and_the_report_and_paper_describe_it(toy_study):
    study, cfg, run_dir = toy_study
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        spec = ArchSpec.from_dict(TrialRecord.from_trial(t).spec)
        assert {s.block for s in spec.stages} == {TOY.name}
        model, _ = load_checkpoint(run_dir / "trials" / f"{t.number:05d}.pt")
        with torch.no_grad():
            assert torch.isfinite(model.eval()(torch.rand(2, 3, spec.input.crop, spec.input.crop))).all()
    write_report(study, get_profile(cfg.profile), run_dir / "report")
    page = (run_dir / "report" / "report.html").read_text()
    assert f"<code>{TOY.short}" in page or f"| {TOY.short}" in page  # the trials' notation
    assert f"{TOY.title}" in page  # the notation key, from the family
    method = (write_paper_kit(study, cfg, run_dir) / "method.tex").read_text()
    assert f"& {TOY.title} &" in method  # a stage row of the architecture table
    assert f"stages of {TOY.title}," in method  # the search space
