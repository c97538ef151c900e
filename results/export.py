"""Export: choose the candidate, retrain it from scratch on all labelled data, write the submission.

Writes under `runs/NAME/export/`: `TEAM_DATE_model.pth` (DATE as YYYYMMDD, the challenge's
`TeamName_DATE_model.pth`), `TEAM_DATE.ipynb` (the self-contained notebook that reproduces the
retrain on Kaggle), and `export.json` (the choice, its estimates and the measured retrain time).

The final retrain runs twice the epochs the search trial planned (more data, no early look at
validation), fewer if the budget model says that would not fit the profile's export budget, after the
trial's own self-supervised pretraining epochs (if it chose any) and, with `--teacher TRIAL`, after
training that trial's architecture as a distillation teacher (counted in the budget, not saved); a
candidate or teacher over the caps, or a retrain that would not fit at the trial's epochs, is refused.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from results.notebook import build_notebook
from results.report import add_composite, rank, trials_frame
from search.budget import BudgetModel
from search.checkpoint import save_checkpoint
from search.data import load_imageset
from search.device import resolve_device
from search.profiles import Profile, get_profile
from search.study import StudyConfig
from search.train import TrainConfig, seed_everything, train_model
from space import ArchSpec, build_model, count_flops, count_params


@dataclass
class ExportResult:
    trial: int
    weights: Path
    notebook: Path
    summary: dict


def choose_candidate(study: optuna.Study, profile: Profile, trial: int | None = None) -> FrozenTrial:
    """Trial `trial`, or the best completed trial by estimated composite score (ties: RMSE, size)."""
    if trial is not None:
        chosen = study.trials[trial] if 0 <= trial < len(study.trials) else None
        if chosen is None or chosen.state != TrialState.COMPLETE:
            raise ValueError(f"trial {trial} is not a completed trial of study {study.study_name!r}")
        return chosen
    ranked = rank(add_composite(trials_frame(study, profile), profile))
    if ranked.empty:
        raise ValueError(f"study {study.study_name!r} has no completed trial within the cap to export")
    return study.trials[int(ranked.iloc[0]["trial"])]


def retrain_seconds(budget: BudgetModel, spec: ArchSpec, cfg: TrainConfig, n_images: int, epochs: int,
                    teacher: tuple[ArchSpec, TrainConfig] | None = None) -> float:
    """Estimated T4 seconds of the final retrain at `epochs` MOS epochs: pretraining (if the recipe has
    it), training, the teacher's own training and its forward passes while the student learns (if
    distilling), and scoring `n_images` test images."""
    def training(s: ArchSpec, c: TrainConfig) -> float:
        return budget.train_seconds(count_flops(s), n_images, epochs, c.batch_size, c.pretrain_epochs)

    total = training(spec, cfg) + budget.infer_seconds(count_flops(spec), n_images, cfg.eval_views)
    if teacher is not None:
        total += training(*teacher) + epochs * budget.infer_seconds(count_flops(teacher[0]), n_images)
    return total


def plan_epochs(profile: Profile, trial: FrozenTrial, seconds: Callable[[int], float],
                epochs: int | None = None) -> tuple[int, float]:
    """(MOS epochs, estimated T4 seconds) of the retrain: `epochs` if given, else twice the trial's
    planned epochs, fewer (down to the trial's) where `seconds(e)` would pass the export budget.
    Refuses a retrain that cannot fit at all."""
    planned = trial.user_attrs["epochs_planned"]
    least = epochs or planned
    if seconds(least) > profile.export_budget_s:
        raise ValueError(f"trial {trial.number}: retraining {least} epochs is estimated at {seconds(least) / 3600:.2f} "
                         f"T4 hours, over the {profile.name} export budget of {profile.export_budget_s / 3600:.2f} h")
    wanted = epochs or 2 * planned
    while wanted > least and seconds(wanted) > profile.export_budget_s:
        wanted -= 1
    return wanted, seconds(wanted)


def _within_caps(spec: ArchSpec, profile: Profile, role: str) -> None:
    params, flops = count_params(spec), count_flops(spec)
    if params > profile.caps.params or (profile.caps.flops is not None and flops > profile.caps.flops):
        raise ValueError(f"{role} ({params:,} params, {flops:,} FLOPs) is over the {profile.name} caps "
                         f"({profile.caps}): refusing to export it")


def teacher_recipe(trial: FrozenTrial, student: ArchSpec, profile: Profile) -> tuple[ArchSpec, TrainConfig]:
    """Trial `trial`'s architecture and training settings as a distillation teacher: at the student's
    input size and crop (it scores the student's crops), MSCN channel as the trial chose."""
    spec = ArchSpec.from_dict(trial.user_attrs["spec"])
    spec.input.resize, spec.input.crop = student.input.resize, student.input.crop
    _within_caps(spec, profile, f"teacher trial {trial.number}")
    cfg = TrainConfig.from_dict(trial.user_attrs["train_config"])
    cfg.crop = spec.input.crop
    return spec, cfg


def export_submission(study: optuna.Study, cfg: StudyConfig, run_dir: Path, team: str, trial: int | None = None,
                      epochs: int | None = None, date: str | None = None, smoke: bool = False,
                      teacher: int | None = None, distill_weight: float = 1.0) -> ExportResult:
    """Retrain the chosen candidate from scratch on all labelled data and write the submission files.
    With `teacher` (a trial number), that trial's architecture is first trained from scratch on the same
    data and the candidate learns from its scores as well (`distill_weight`); only the candidate is saved."""
    if not team or not team.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"team name {team!r} must be letters, digits, '-' or '_' (it names the weights file)")
    profile = get_profile(cfg.profile)
    chosen = choose_candidate(study, profile, trial)
    spec = ArchSpec.from_dict(chosen.user_attrs["spec"])
    params = count_params(spec)
    _within_caps(spec, profile, f"trial {chosen.number}")
    teaching = teacher_recipe(choose_candidate(study, profile, teacher), spec, profile) if teacher is not None else None
    data = load_imageset(cfg.dataset, cfg.root, size=spec.input.resize, cache_dir=cfg.cache_dir, targets=cfg.targets,
                         seed=cfg.seed, n_images=cfg.n_synthetic, progress=not smoke)
    train_cfg = TrainConfig.from_dict(chosen.user_attrs["train_config"])
    budget = BudgetModel(efficiency=cfg.t4_efficiency)
    train_cfg.epochs, t4_s = plan_epochs(
        profile, chosen, lambda e: retrain_seconds(budget, spec, train_cfg, len(data), e, teaching), 1 if smoke else epochs)
    train_cfg.seed, train_cfg.crop = cfg.seed, spec.input.crop
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    teacher_model = None
    if teaching is not None:
        teacher_cfg = replace(teaching[1], epochs=train_cfg.epochs, seed=cfg.seed + 1)
        teaching = (teaching[0], teacher_cfg)
        seed_everything(teacher_cfg.seed)
        teacher_model = build_model(teaching[0])
        train_model(teacher_model, data, None, teacher_cfg, device=device, progress=not smoke)
        train_cfg.distill_weight = distill_weight
    date = date or datetime.date.today().strftime("%Y%m%d")
    out = Path(run_dir) / "export"

    seed_everything(cfg.seed)
    model = build_model(spec)
    train_model(model, data, None, train_cfg, device=device, progress=not smoke, teacher=teacher_model)
    retrain_s = time.perf_counter() - start
    weights = save_checkpoint(out / f"{team}_{date}_model.pth", model.cpu(), spec, target_names=data.target_names,
                              train_config=train_cfg.to_dict(), trial=chosen.number)
    notebook = out / f"{team}_{date}.ipynb"
    notebook.write_text(json.dumps(build_notebook(
        team, date, spec.to_dict(), train_cfg.to_dict(), data.target_names, train_cfg.epochs, cfg.seed,
        teacher=(teaching[0].to_dict(), teaching[1].to_dict()) if teaching else None), indent=1))
    estimate = add_composite(trials_frame(study, profile), profile).set_index("trial").loc[chosen.number]
    summary = {
        "study": study.study_name, "trial": chosen.number, "summary": chosen.user_attrs.get("summary"),
        "params": params, "flops": count_flops(spec), "epochs": train_cfg.epochs, "images": len(data),
        "pretrain_epochs": train_cfg.pretrain_epochs,
        "teacher": None if teaching is None else {"trial": teacher, "params": count_params(teaching[0])},
        "validation_score": chosen.values[0], "estimated_composite": None if estimate["composite"] != estimate["composite"] else float(estimate["composite"]),
        "estimated_t4_s": t4_s, "measured_retrain_s": retrain_s, "device": str(resolve_device(cfg.device)),
        "weights": weights.name, "notebook": notebook.name,
    }
    (out / "export.json").write_text(json.dumps(summary, indent=2))
    return ExportResult(chosen.number, weights, notebook, summary)
