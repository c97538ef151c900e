"""Export: the submission weights reload and predict like the model that was trained; the notebook runs
headless on the T4 path (fp16 on the CPU) within a short deadline and agrees with the project;
candidates over the cap or the time budget are refused; the final schedule follows the candidate's
validation curve (fill while it still rose) or `--epochs`."""
from __future__ import annotations

import ast
import errno
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import json
import math

import nbformat
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lint import undefined_names
from notebook_run import generated_code, run_smoke, write_labelled_pngs
from results import export as export_module
from results.export import ExportOptions, export_submission
from results.candidates import candidate_recipe
from results.schedule import RISING_SCALE, Schedule
from run_search import error_message, main
from search.budget import BudgetModel
from search.checkpoint import load_checkpoint
from search.data import decode_images, load_folder, make_synthetic
from search.profiles import get_profile
from search.study import StudyData
from search.train.loop import predict


@pytest.fixture(scope="module")
def exported(tiny_study):
    """Exported with the study's largest trial as a distillation teacher, so the notebook test covers
    the teacher's training too."""
    study, cfg, run_dir = tiny_study
    largest = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.user_attrs["params"])
    return export_submission(study, cfg, run_dir,
                             ExportOptions("Team_X", date="20261122", smoke=True, teacher=largest.number))


def test_weights_reload_and_match_the_trained_model(exported, tiny_study):
    study, cfg, run_dir = tiny_study
    assert exported.weights.name == "Team_X_20261122_model.pth" and exported.notebook.name == "Team_X_20261122.ipynb"
    model, payload = load_checkpoint(exported.weights)
    images = make_synthetic(n_images=16, size=model.spec.input.resize, seed=9).images
    a = predict(model, images, crop=model.spec.input.crop)
    b = predict(exported.model, images, crop=model.spec.input.crop)
    assert np.abs(a - b).max() < 1e-5 and a.std() > 0
    for name in (exported.weights, exported.notebook, run_dir / "export" / "requirements.txt",
                 run_dir / "export" / "HOW_TO_RUN.md"):
        assert (name.stat().st_mode & 0o777) == 0o644, name
    requirements = (run_dir / "export" / "requirements.txt").read_text()
    # torch is left to the notebook's machine (Kaggle's CUDA build), not pinned to the export machine's CPU build
    assert "torch>=" in requirements and "torch==" not in requirements and "numpy==" in requirements
    how = (run_dir / "export" / "HOW_TO_RUN.md").read_text()
    assert "Expected training time on the T4" in how and " 0 minutes" not in how and "estimated at 0 min" not in how
    assert "Trained at export" in how and "trained 1 epochs" in how  # what ran, not only the plan
    assert "`Team_X_20261122_model.pth`" in how and "GPU T4" in how and "Internet **off**" in how
    assert "Used for the export" in how and "environment.txt" in how
    settings = nbformat.read(exported.notebook, as_version=4).cells[1].source
    icme = get_profile(cfg.profile)
    assert f"DEADLINE_S = {icme.export_budget_s:g} " in settings and f"PARAM_CAP = {icme.caps.params} " in settings
    assert exported.summary["params"] <= get_profile(cfg.profile).caps.params
    largest = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.user_attrs["params"])
    assert exported.summary["teacher"]["trial"] == largest.number
    assert "'teacher': {" in nbformat.read(exported.notebook, as_version=4).cells[1].source
    assert (run_dir / "export" / "export.json").is_file()


def test_notebook_runs_headless_on_the_t4_path_within_its_deadline(exported, tmp_path):
    labels = write_labelled_pngs(tmp_path, n_images=24, size=48, seed=4)
    nb = nbformat.read(exported.notebook, as_version=4)
    nbformat.validate(nb)  # the hand-written JSON is a valid nbformat 4.5 notebook
    assert 'SCORE_COLS = [\'mos_quality\']' in nb.cells[1].source and 'IMAGE_COL = "name"' in nb.cells[1].source
    out = run_smoke(nb, tmp_path, f"TRAIN_IMAGES = TEST_IMAGES = {str(tmp_path / 'imgs')!r}\n"
                                  f"TRAIN_LABELS = TEST_LABELS = {str(labels)!r}\nPRECISION = 'fp16'")
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "epochs fit" in printed and "finished after" in printed
    # about 10 s on an idle 2-core CPU; the guard cuts training, not the imports, probes or scoring
    elapsed = float(printed.split("finished after ")[1].split(" s")[0])
    assert elapsed <= 120
    assert len(out) == 24 and out["score"].notna().all()
    model, _ = load_checkpoint(tmp_path / "Team_X_20261122_model.pth")
    assert model.spec.input.resize == 32  # the smoke size
    images = decode_images(load_folder(tmp_path / "imgs"), model.spec.input.resize, tmp_path / "cache", progress=False)
    ours = predict(model, images.images, crop=model.spec.input.crop, precision="fp16")[:, 0]
    assert np.abs(out.sort_values("image")["score"].to_numpy() - ours).max() < 1e-3


def test_generated_notebook_defines_no_top_level_name_twice():
    bound = Counter()
    for node in ast.parse(generated_code()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound[node.name] += 1
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                bound.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "annotations")
    assert not [name for name, count in bound.items() if count > 1]


def test_generated_notebook_uses_no_undefined_name():
    """Every module the notebook inlines must bring what it calls: a name defined only in a module left
    out of `SOURCES` fails at the first call on Kaggle, not here."""
    undefined = undefined_names(generated_code())
    assert not undefined, undefined


def test_export_refuses_over_cap_and_over_budget(tiny_study, monkeypatch):
    study, cfg, run_dir = tiny_study
    icme = get_profile(cfg.profile)
    monkeypatch.setattr(export_module, "get_profile", lambda name: replace(icme, caps=replace(icme.caps, params=100)))
    with pytest.raises(ValueError, match="no completed trial within the cap"):
        export_submission(study, cfg, run_dir, ExportOptions("T", smoke=True))
    with pytest.raises(ValueError, match=r"trial \d+ \(.* params.*over the caps .* of icme2026-aigc"):
        export_submission(study, cfg, run_dir, ExportOptions("T", trial=study.best_trials[0].number, smoke=True))
    sizes = sorted((t.user_attrs["params"], t.number) for t in study.get_trials(states=(TrialState.COMPLETE,)))
    between = replace(icme.caps, params=sizes[0][0])  # the smallest trial fits, the largest does not
    monkeypatch.setattr(export_module, "get_profile", lambda name: replace(icme, caps=between))
    with pytest.raises(ValueError, match=f"teacher trial {sizes[-1][1]} .*over the caps .* of icme2026-aigc"):
        export_submission(study, cfg, run_dir, ExportOptions("T", trial=sizes[0][1], teacher=sizes[-1][1], smoke=True))
    monkeypatch.setattr(export_module, "get_profile", lambda name: replace(icme, export_budget_s=1e-6))
    with pytest.raises(ValueError, match="over the icme2026-aigc export budget"):
        export_submission(study, cfg, run_dir, ExportOptions("T", smoke=True))
    with pytest.raises(ValueError, match="team name"):
        export_submission(study, cfg, run_dir, ExportOptions("bad name!", smoke=True))
    with pytest.raises(ValueError, match="'../../x' is not a date as YYYYMMDD"):
        export_submission(study, cfg, run_dir, ExportOptions("T", date="../../x", smoke=True))


def test_a_full_disk_leaves_no_partial_export(tiny_study, monkeypatch):
    """The notebook's write fails as on a full disk (after the weights were written): one line naming the
    file, and the export folder holds nothing of this export, not even the weights."""
    study, cfg, run_dir = tiny_study
    out = run_dir / "export"
    before = sorted(out.iterdir()) if out.exists() else []

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as info:
        export_submission(study, cfg, run_dir, ExportOptions("Team_Full", date="20261122", smoke=True))
    assert error_message(info.value) == f"No space left on device: {out / 'Team_Full_20261122.ipynb'}"
    assert sorted(out.iterdir()) == before and not list(run_dir.glob(".export-*"))


def test_the_export_folder_is_checked_before_the_retrain(tiny_study, monkeypatch):
    study, cfg, run_dir = tiny_study
    out = run_dir / "export"
    real = os.access
    monkeypatch.setattr(export_module.os, "access", lambda p, mode: False if Path(p) == out else real(p, mode))
    monkeypatch.setattr(type(cfg.task), "retrain", lambda *args, **kwargs: pytest.fail("retrained before the check"))
    with pytest.raises(PermissionError) as info:
        export_submission(study, cfg, run_dir, ExportOptions("T", smoke=True))
    assert error_message(info.value) == f"cannot write the export to this folder (read-only): {out}"


def _with_curve(study: optuna.Study, number: int, curve: list[float]) -> optuna.Study:
    """An in-memory copy of `study` whose trial `number` stored `curve` as its validation curve."""
    copy = optuna.create_study(study_name=study.study_name, directions=study.directions)
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, value)
    for t in study.get_trials():
        copy.add_trial(optuna.trial.create_trial(
            state=t.state, values=t.values if t.state == TrialState.COMPLETE else None, params=t.params,
            distributions=t.distributions, system_attrs=t.system_attrs,
            user_attrs={**t.user_attrs, "curve": curve} if t.number == number else t.user_attrs))
    return copy


def _settings(notebook: Path) -> tuple[str, dict]:
    """The notebook's Settings cell: (its source, the names it defines)."""
    source = nbformat.read(notebook, as_version=4).cells[1].source
    scope: dict = {}
    exec(source, scope)
    return source, scope


@pytest.mark.parametrize("curve, scale", [([0.2, 0.4, 0.6], RISING_SCALE), ([0.3, 0.6, 0.5], None)],
                         ids=["still-rising", "stopped-rising"])
def test_the_schedule_follows_the_trial_curve(tiny_study, tmp_path, curve, scale):
    """A trial whose validation score still rose at its end is exported for 4 x its epochs (never "fill": longer
    scored less when measured at length); one that peaked at epoch 2 of 3 trains 2 x 2 epochs; the notebook asks
    for that number."""
    study, cfg, _ = tiny_study
    number = study.get_trials(states=(TrialState.COMPLETE,))[0].number
    epochs = 4 if scale is None else scale * candidate_recipe(number, study).train.epochs
    result = export_submission(_with_curve(study, number, curve), cfg, tmp_path,
                               ExportOptions("T", trial=number, date="20261122", smoke=True))
    chosen = result.summary["schedule"]
    assert (chosen["epochs"] == epochs
            and json.loads((tmp_path / "export" / "export.json").read_text())["schedule"] == chosen)
    source, settings = _settings(result.notebook)
    how = (tmp_path / "export" / "HOW_TO_RUN.md").read_text()
    assert settings["EPOCHS"] == result.summary["planned_epochs"]  # the plan's epochs (smoke: 1), a number
    assert f"**Schedule.** `EPOCHS` in Settings: {epochs} epochs" in how
    if scale is None:
        assert "not clearly rising" in source and "epoch 2: 2 x 2 epochs" in chosen["reason"]
    else:
        assert "still rising" in source and f"{RISING_SCALE} x the trial's" in chosen["reason"]


def test_export_epochs_fill_on_the_command_line_fills_the_export_budget(tiny_study, tmp_path, monkeypatch, capsys):
    """`export --epochs fill` plans every epoch the T4 budget model fits in the export budget (here made
    to fit one more than the trial's), retrains them, and writes a notebook that trains until its deadline."""
    study, cfg, _ = tiny_study
    number = min(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.user_attrs["flops"]).number
    (tmp_path / "tiny").mkdir()  # a copy of the study, so its own export folder stays as it was
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage,
                      to_storage=f"sqlite:///{tmp_path / 'tiny' / 'study.db'}")
    recipe = candidate_recipe(number, study)
    icme = get_profile(cfg.profile)
    images = len(StudyData(cfg, progress=False).all(recipe.spec.input.resize))
    wanted = recipe.train.epochs + 1
    exact = export_module.export_plan(recipe, "t", replace(icme, export_budget_s=math.inf),
                                      BudgetModel(efficiency=cfg.t4_efficiency), images, Schedule(wanted, 1, "t"),
                                      False)
    budget = exact.seconds + 0.5 * exact.epoch_s
    monkeypatch.setattr(export_module, "get_profile", lambda name: replace(icme, export_budget_s=budget))
    assert main(["export", "--study", "tiny", "--runs-dir", str(tmp_path), "--team", "T", "--date", "20261122",
                 "--trial", str(number), "--epochs", "fill"]) == 0
    assert "schedule fill: --epochs fill given" in capsys.readouterr().out
    summary = json.loads((tmp_path / "tiny" / "export" / "export.json").read_text())
    assert summary["planned_epochs"] == wanted and summary["schedule"]["epochs"] == "fill"
    assert summary["estimated_t4_s"] <= budget
    _, settings = _settings(tmp_path / "tiny" / "export" / "T_20261122.ipynb")
    assert settings["EPOCHS"] == "fill"


def test_export_time_limit_bounds_the_retrain_here_not_the_notebook(tiny_study, tmp_path, capsys):
    """`export --epochs fill --time-limit 8s`: the outlook is printed before training; the retrain here ends
    by the limit (plus at most one epoch), export.json says what was trained and why it stopped, and the
    notebook still trains until its own deadline."""
    study, cfg, _ = tiny_study
    number = study.get_trials(states=(TrialState.COMPLETE,))[0].number
    (tmp_path / "tiny").mkdir()
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage,
                      to_storage=f"sqlite:///{tmp_path / 'tiny' / 'study.db'}")
    assert main(["export", "--study", "tiny", "--runs-dir", str(tmp_path), "--team", "T", "--date", "20261122",
                 "--trial", str(number), "--epochs", "fill", "--time-limit", "8s", "--final", "all"]) == 0
    out = capsys.readouterr().out
    assert out.index("export retrains trial") < out.index("exported trial"), "the outlook comes before the retrain"
    assert "on a T4:" in out and "s/epoch (measured on this CPU" in out and "ends by" in out
    summary = json.loads((tmp_path / "tiny" / "export" / "export.json").read_text())
    trained = summary["trained"]
    epoch_s = trained["seconds"] / trained["epochs_run"]
    assert trained["time_limit_s"] == 8 and trained["seconds"] <= 8 + epoch_s
    assert trained["epochs_run"] < summary["planned_epochs"] and "time budget" in trained["stop"]
    assert trained["final"] == "all" and trained["line"] in out and "a check of the flow, not a submission" in out
    _, settings = _settings(tmp_path / "tiny" / "export" / "T_20261122.ipynb")
    assert settings["EPOCHS"] == "fill" and settings["FINAL"] == "all"
    assert "Trained at export" in (tmp_path / "tiny" / "export" / "HOW_TO_RUN.md").read_text()
    assert main(["report", "--study", "tiny", "--runs-dir", str(tmp_path)]) == 0  # says what the last export did
    assert (f"last export: trial {number}, notebook schedule fill; its retrain here {trained['line']}"
            in capsys.readouterr().out)
    assert trained["line"] in (tmp_path / "tiny" / "report" / "report.html").read_text()
