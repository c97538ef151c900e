"""The compression stage of a study: prune and quantize the best candidates, measure every variant.

For each candidate trial: int8 and fp16 copies of the trained model; for each ratio, a pruned and
fine-tuned model (re-expressed as a spec), its int8 and fp16 copies, and a scratch variant: the pruned
spec trained from scratch with the trial's recipe (its `TrainConfig`, epochs planned and seed) on the
study's train split. A notebook that trains from scratch can only submit a pruned architecture that
way, so the scratch variant is the one export can reproduce. Every variant is saved under
`runs/NAME/compress/`, reloaded through the common loader, scored on the study's own validation split
and recorded with its change against its parent; variants already recorded are skipped (an
interrupted run resumes) and none over the profile's caps is recorded.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from compress.prune import prune_model
from compress.quantize import WEIGHT_FORMATS, Measurement, measure
from compress.variants import Variant, list_variants, record_variant, variant_exists, variants_url
from search.budget import BudgetModel
from search.checkpoint import load_checkpoint, save_checkpoint
from search.device import resolve_device
from search.profiles import get_profile
from search.train.recipe import Recipe
from search.study import StudyConfig, StudyData, TrialRecord, check_split
from search.study.front import pareto_front
from search.train.recipe import TrainConfig
from search.train.loop import seed_everything, train_model
from space import ArchSpec, CapError, IQANet, build_model, count_params, spec_summary, train_flops


def chosen_trials(study: optuna.Study, trials: Sequence[int] | None = None) -> list[FrozenTrial]:
    """The completed trials numbered `trials`, in that order (`compress --top` passes the ranking's first), or
    by default those on the Pareto front of parameters against score (`search.study.front`, the report's
    front), best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if trials is not None:
        by_number = {t.number: t for t in complete}
        missing = [n for n in trials if n not in by_number]
        if missing:
            raise ValueError(f"trial {missing[0]} is not a completed trial of study {study.study_name!r}")
        return [by_number[n] for n in trials]
    frame = pd.DataFrame({"state": "COMPLETE", "score": [t.values[0] for t in complete],
                          "params": [t.values[1] for t in complete]}, index=range(len(complete)))
    return sorted((complete[i] for i in pareto_front(frame).index), key=lambda t: -t.values[0])


def scratch_recipe(trial: TrialRecord, spec: ArchSpec) -> Recipe:
    """`spec` with `trial`'s training recipe: its `TrainConfig` (seed included) for the epochs it planned."""
    return Recipe(spec, replace(trial.trained().train, epochs=trial.epochs_planned))


class _Stage:
    """Per-study state: where variants go, what they train and score on, what is already recorded.
    Refuses a study validated on another split than the one computed now (`check_split`): its
    variants could not be compared with its trials."""

    def __init__(self, study: optuna.Study, cfg: StudyConfig, run_dir: Path, storage_url: str, bar: tqdm):
        self.study, self.run_dir, self.bar = study.study_name, Path(run_dir), bar
        self.url = variants_url(storage_url, run_dir)
        self.profile = get_profile(cfg.profile)
        self.data = StudyData(cfg)
        check_split(study, self.data)
        self.budget = BudgetModel(efficiency=cfg.t4_efficiency)
        self.device = resolve_device(cfg.device)

    def done(self, vid: str) -> bool:
        return variant_exists(self.url, self.study, vid)

    def measure(self, path: Path, trial: TrialRecord) -> Measurement:
        """Score a saved variant on the study's validation split, as its trial was scored."""
        recipe = trial.trained()
        _, val_set = self.data.train_val(recipe.spec.input.resize)
        return measure(path, val_set, self.profile, recipe.train.eval_views, self.device)

    def save(self, vid: str, trial: TrialRecord, kind: str, model: IQANet, parent_m: Measurement,
             target_names: list[str], weights: str = "fp32", parent: str | None = None,
             recipe: Recipe | None = None, **extra) -> Measurement | None:
        """Save, measure and record one variant; None (nothing recorded) when it is over the caps.
        `recipe`: what a scratch variant was trained with (recorded, so export can repeat it)."""
        spec = model.spec
        try:
            self.profile.caps.check(spec, f"variant {vid}")
        except CapError as err:
            self.bar.write(f"{err}: not recorded")
            return None
        scratch_config = recipe.train.to_dict() if recipe else None
        path = save_checkpoint(self.run_dir / "compress" / f"{vid}.pt", model, spec, weights=weights, variant=vid,
                               trial=trial.number, parent=parent, target_names=target_names,
                               train_config=scratch_config or trial.recipe["train"])
        m = self.measure(path, trial)
        record_variant(self.url, Variant(
            id=vid, study=self.study, trial=trial.number, kind=kind, params=m.params, bytes=m.bytes, score=m.score,
            metrics=m.metrics, path=str(path.relative_to(self.run_dir)), parent=parent, flops=m.flops,
            delta=m.delta(parent_m), summary=spec_summary(spec), spec=spec.to_dict(), train_config=scratch_config,
            **extra))
        return m

    def quantized(self, base: str, trial: TrialRecord, model: IQANet, parent_m: Measurement,
                  names: list[str], parent: str | None, **extra) -> None:
        for weights in WEIGHT_FORMATS:
            vid = f"{base}-{weights}"
            if not self.done(vid):
                self.save(vid, trial, weights, model, parent_m, names, weights=weights, parent=parent, **extra)
            self.bar.update()

    def scratch(self, pid: str, trial: TrialRecord, spec: ArchSpec, pruned_m: Measurement, names: list[str],
                **extra) -> None:
        """Train the pruned `spec` from scratch with the trial's recipe on the train split; record it."""
        recipe = scratch_recipe(trial, spec)
        train_set, _ = self.data.train_val(spec.input.resize)
        seed_everything(recipe.train.seed)  # the initial weights too, as the trial drew its own
        model = build_model(spec)
        train_model(model, train_set, None, recipe.train, device=self.device)
        t4_s = self.budget.train_seconds(train_flops(spec), len(train_set), recipe.train.epochs,
                                                   recipe.train.batch_size, recipe.train.pretrain_epochs)
        self.save(f"{pid}-scratch", trial, "scratch", model.cpu(), pruned_m, names, parent=pid, recipe=recipe,
                  t4_s=t4_s, **extra)


def _finetune_config(trial: TrialRecord, epochs: int | None, steps: int) -> TrainConfig:
    """The trial's own training settings at a lower learning rate and without pretraining (the weights
    are trained already), for one of `steps` pruning steps: `epochs` (default: a quarter of the epochs
    the trial ran, at least 1) shared out over the steps, at least 1 each."""
    cfg = trial.trained().train
    total = epochs if epochs is not None else max(1, (trial.epochs_run or 4) // 4)
    return replace(cfg, lr=cfg.lr * 0.3, warmup_epochs=0.0, pretrain_epochs=0, epochs=max(1, round(total / steps)))


def compress_study(study: optuna.Study, cfg: StudyConfig, run_dir: Path, storage_url: str,
                   ratios: tuple[float, ...] = (0.3, 0.5), trials: Sequence[int] | None = None,
                   importance: str = "magnitude", finetune_epochs: int | None = None, iterative_steps: int = 1,
                   global_pruning: bool = False,
                   progress: bool = True) -> pd.DataFrame:
    """Prune (to each parameter reduction in `ratios`, fine-tuning after each of `iterative_steps`
    steps), retrain each pruned spec from scratch, and quantize the candidates
    (`chosen_trials(study, trials)`); returns every recorded variant of the study
    (`compress.variants.list_variants`)."""
    cfg.task.require("compressible", study.study_name)  # its fine-tuning and scratch variants train on MOS
    if not all(0 < r < 1 for r in ratios):
        raise ValueError(f"pruning ratios must lie in (0, 1), got {ratios}")
    run_dir = Path(run_dir)
    chosen = chosen_trials(study, trials)
    per_trial = len(WEIGHT_FORMATS) + len(ratios) * (2 + len(WEIGHT_FORMATS))
    tag = (f"-{importance}" + ("-global" if global_pruning else "")
           + (f"-it{iterative_steps}" if iterative_steps > 1 else ""))
    with tqdm(total=len(chosen) * per_trial, desc=f"compress {study.study_name}", unit="variant",
              disable=not progress) as bar:
        stage = _Stage(study, cfg, run_dir, storage_url, bar)
        for trial in map(TrialRecord.from_trial, chosen):
            t = f"t{trial.number}"
            pids = [f"{t}-prune{r:g}{tag}" for r in ratios]
            ids = ([f"{t}-{w}" for w in WEIGHT_FORMATS]
                   + [f"{p}{s}" for p in pids for s in ("", "-int8", "-fp16", "-scratch")])
            if all(stage.done(vid) for vid in ids):
                bar.update(per_trial)
                continue
            ckpt = run_dir / trial.checkpoint
            model, payload = load_checkpoint(ckpt)
            names = payload["target_names"]
            trial_m = stage.measure(ckpt, trial)
            stage.quantized(t, trial, model, trial_m, names, parent=None)
            train_set, _ = stage.data.train_val(model.spec.input.resize)
            ft_cfg = _finetune_config(trial, finetune_epochs, iterative_steps)

            def finetune(pruned: IQANet) -> None:
                train_model(pruned, train_set, None, ft_cfg, device=stage.device)

            for ratio, pid in zip(ratios, pids):
                extra = {"ratio": ratio, "importance": importance}
                if all(stage.done(f"{pid}{s}") for s in ("", "-int8", "-fp16", "-scratch")):
                    bar.update(2 + len(WEIGHT_FORMATS))
                    continue
                if stage.done(pid):
                    path = run_dir / "compress" / f"{pid}.pt"
                    pruned, pruned_m = load_checkpoint(path)[0], stage.measure(path, trial)
                else:
                    result = prune_model(model, round(count_params(model.spec) * (1 - ratio)), importance,
                                         global_pruning, iterative_steps, data=train_set, finetune=finetune)
                    pruned = result.model
                    pruned_m = stage.save(pid, trial, "pruned", pruned, trial_m, names, left_out=result.left_out,
                                          **extra)
                    if pruned_m is None:
                        bar.update(2 + len(WEIGHT_FORMATS))
                        continue
                bar.update()
                stage.quantized(pid, trial, pruned, pruned_m, names, parent=pid, **extra)
                if not stage.done(f"{pid}-scratch"):
                    stage.scratch(pid, trial, pruned.spec, pruned_m, names, **extra)
                bar.update()
    return list_variants(stage.url, study.study_name)
