"""Export: choose the candidate, retrain it from scratch on all labelled data, write the submission.

Writes under `runs/NAME/export/`: `TEAM_DATE_model.pth` (DATE as YYYYMMDD, the challenge's
`TeamName_DATE_model.pth`), `TEAM_DATE.ipynb` (the self-contained notebook that reproduces the
retrain on Kaggle), and `export.json` (the choice, its estimates and the measured retrain time).

The final retrain runs twice the epochs the search trial planned (more data, no early look at
validation), fewer if the budget model says that would not fit the profile's export budget, after the
trial's own self-supervised pretraining epochs (if it chose any); a
candidate over the parameter cap, or whose retrain at even its trial's epochs would not fit, is refused.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

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


def plan_epochs(budget: BudgetModel, profile: Profile, spec: ArchSpec, trial: FrozenTrial, n_images: int,
                batch_size: int, views: int, epochs: int | None = None) -> tuple[int, float]:
    """(MOS epochs, estimated T4 seconds of retrain + inference); refuses a retrain that cannot fit.
    The trial's pretraining epochs, if any, are kept as they were and counted in the estimate."""
    flops = count_flops(spec)
    fixed = budget.infer_seconds(flops, n_images, views) + budget.pretrain_seconds(
        flops, n_images, trial.user_attrs["train_config"].get("pretrain_epochs", 0), batch_size)
    fits = lambda e: budget.train_seconds(flops, n_images, e, batch_size) + fixed  # noqa: E731
    wanted = epochs or 2 * trial.user_attrs["epochs_planned"]
    if fits(epochs or trial.user_attrs["epochs_planned"]) > profile.export_budget_s:
        raise ValueError(f"trial {trial.number}: retraining {epochs or trial.user_attrs['epochs_planned']} epochs on "
                         f"{n_images} images is estimated at {fits(epochs or trial.user_attrs['epochs_planned']) / 3600:.2f} "
                         f"T4 hours, over the {profile.name} export budget of {profile.export_budget_s / 3600:.2f} h")
    if epochs is None:
        wanted = min(wanted, max(trial.user_attrs["epochs_planned"],
                                 budget.epochs_for(profile.export_budget_s - fixed, flops, n_images, batch_size)))
    return wanted, fits(wanted)


def export_submission(study: optuna.Study, cfg: StudyConfig, run_dir: Path, team: str, trial: int | None = None,
                      epochs: int | None = None, date: str | None = None, smoke: bool = False) -> ExportResult:
    """Retrain the chosen candidate from scratch on all labelled data and write the submission files."""
    if not team or not team.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"team name {team!r} must be letters, digits, '-' or '_' (it names the weights file)")
    profile = get_profile(cfg.profile)
    chosen = choose_candidate(study, profile, trial)
    spec = ArchSpec.from_dict(chosen.user_attrs["spec"])
    params = count_params(spec)
    if params > profile.caps.params or (profile.caps.flops is not None and count_flops(spec) > profile.caps.flops):
        raise ValueError(f"trial {chosen.number} ({params:,} params, {count_flops(spec):,} FLOPs) is over the "
                         f"{profile.name} caps ({profile.caps}): refusing to export it")
    data = load_imageset(cfg.dataset, cfg.root, size=spec.input.resize, cache_dir=cfg.cache_dir, targets=cfg.targets,
                         seed=cfg.seed, n_images=cfg.n_synthetic, progress=not smoke)
    train_cfg = TrainConfig.from_dict(chosen.user_attrs["train_config"])
    budget = BudgetModel(efficiency=cfg.t4_efficiency)
    train_cfg.epochs, t4_s = plan_epochs(budget, profile, spec, chosen, len(data), train_cfg.batch_size,
                                         train_cfg.eval_views, 1 if smoke else epochs)
    train_cfg.seed, train_cfg.crop = cfg.seed, spec.input.crop
    date = date or datetime.date.today().strftime("%Y%m%d")
    out = Path(run_dir) / "export"

    seed_everything(cfg.seed)
    model = build_model(spec)
    start = time.perf_counter()
    train_model(model, data, None, train_cfg, device=resolve_device(cfg.device), progress=not smoke)
    retrain_s = time.perf_counter() - start
    weights = save_checkpoint(out / f"{team}_{date}_model.pth", model.cpu(), spec, target_names=data.target_names,
                              train_config=train_cfg.to_dict(), trial=chosen.number)
    notebook = out / f"{team}_{date}.ipynb"
    notebook.write_text(json.dumps(build_notebook(team, date, spec.to_dict(), train_cfg.to_dict(), data.target_names,
                                                  train_cfg.epochs, cfg.seed), indent=1))
    estimate = add_composite(trials_frame(study, profile), profile).set_index("trial").loc[chosen.number]
    summary = {
        "study": study.study_name, "trial": chosen.number, "summary": chosen.user_attrs.get("summary"),
        "params": params, "flops": count_flops(spec), "epochs": train_cfg.epochs, "images": len(data),
        "validation_score": chosen.values[0], "estimated_composite": None if estimate["composite"] != estimate["composite"] else float(estimate["composite"]),
        "estimated_t4_s": t4_s, "measured_retrain_s": retrain_s, "device": str(resolve_device(cfg.device)),
        "weights": weights.name, "notebook": notebook.name,
    }
    (out / "export.json").write_text(json.dumps(summary, indent=2))
    return ExportResult(chosen.number, weights, notebook, summary)
