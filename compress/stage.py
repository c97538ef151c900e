"""The compression stage of a study: prune and quantize the best candidates, measure every variant.

For each candidate trial: int8 and fp16 copies of the trained model; for each ratio, a pruned and
fine-tuned model (re-expressed as a spec) and its int8 and fp16 copies. Every variant is measured on
the study's own validation split (parameters, bytes on disk, metrics, profile score) and recorded
beside its parent in the study's database; variants already recorded are skipped, so an interrupted
run resumes.
"""
from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from compress.prune import prune_model
from compress.variants import VariantStore
from search.checkpoint import load_checkpoint, save_checkpoint
from search.device import resolve_device
from search.profiles import get_profile
from search.study import Objective, StudyConfig
from search.train import TrainConfig, evaluate
from space import count_flops, count_params, spec_summary

QUANTIZED = ("int8", "fp16")


def candidates(study: optuna.Study, top_k: int | None = None) -> list[FrozenTrial]:
    """The Pareto front's completed trials, or the `top_k` best by score; best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    chosen = sorted(complete, key=lambda t: -t.values[0])[:top_k] if top_k else study.best_trials
    return sorted(chosen, key=lambda t: -t.values[0])


class _Measure:
    """Saves a variant, reloads it through the common loader, scores it, records it."""

    def __init__(self, study: optuna.Study, cfg: StudyConfig, run_dir: Path, store: VariantStore, device):
        self.profile = get_profile(cfg.profile)
        self.run_dir, self.store, self.device = Path(run_dir), store, device
        self.objective = Objective(cfg, run_dir)

    def __call__(self, vid: str, trial: FrozenTrial, kind: str, model, spec, target_names: list[str],
                 weights: str = "fp32", parent: str | None = None, **extra) -> None:
        params = count_params(spec)
        if params > self.profile.caps.params:
            raise ValueError(f"variant {vid} has {params:,} parameters, over the {self.profile.name} cap")
        path = save_checkpoint(self.run_dir / "compress" / f"{vid}.pt", model, spec, weights=weights,
                               variant=vid, trial=trial.number, target_names=target_names,
                               train_config=trial.user_attrs["train_config"])
        reloaded, _ = load_checkpoint(path)
        _, val_set = self.objective.data(spec.input.resize)
        views = trial.user_attrs["train_config"].get("eval_views", 1)
        per_target = evaluate(reloaded, val_set, spec.input.crop, views, device=self.device)
        first = next(iter(per_target.values()))
        self.store.record(vid, trial.number, kind, params, path.stat().st_size, self.profile.score(per_target),
                          first, str(path.relative_to(self.run_dir)), parent=parent, flops=count_flops(spec),
                          summary=spec_summary(spec), **extra)


def compress_study(study: optuna.Study, cfg: StudyConfig, run_dir: Path, storage_url: str,
                   ratios: tuple[float, ...] = (0.3, 0.5), top_k: int | None = None, importance: str = "magnitude",
                   finetune_epochs: int | None = None, iterative_steps: int = 1, progress: bool = True) -> pd.DataFrame:
    """Prune and quantize the candidates; returns every recorded variant of the study."""
    run_dir = Path(run_dir)
    store = VariantStore(storage_url, study.study_name)
    device = resolve_device(cfg.device)
    measure = _Measure(study, cfg, run_dir, store, device)
    chosen = candidates(study, top_k)
    jobs = len(chosen) * (len(QUANTIZED) + len(ratios) * (1 + len(QUANTIZED)))
    bar = tqdm(total=jobs, desc=f"compress {study.study_name}", unit="variant", disable=not progress)
    for trial in chosen:
        model, payload = load_checkpoint(run_dir / trial.user_attrs["checkpoint"])
        spec, names = model.spec, payload["target_names"]
        for weights in QUANTIZED:
            vid = f"t{trial.number}-{weights}"
            if not store.exists(vid):
                measure(vid, trial, weights, model, spec, names, weights=weights)
            bar.update()
        train_set, _ = measure.objective.data(spec.input.resize)
        finetune = TrainConfig.from_dict(trial.user_attrs["train_config"])
        finetune.epochs = finetune_epochs if finetune_epochs is not None else max(1, trial.user_attrs["epochs_run"] // 4)
        finetune.lr *= 0.3
        for ratio in ratios:
            pid = f"t{trial.number}-prune{ratio:g}-{importance}"
            if store.exists(pid):
                pruned, _ = load_checkpoint(run_dir / "compress" / f"{pid}.pt")
                pruned_spec = pruned.spec
            else:
                result = prune_model(model, train_set, ratio, importance, iterative_steps=iterative_steps,
                                     finetune=finetune, device=device, seed=cfg.seed + trial.number)
                pruned, pruned_spec = result.model, result.spec
                measure(pid, trial, "prune", pruned, pruned_spec, names, ratio=ratio, importance=importance,
                        left_out=result.left_out)
            bar.update()
            for weights in QUANTIZED:
                vid = f"{pid}-{weights}"
                if not store.exists(vid):
                    measure(vid, trial, weights, pruned, pruned_spec, names, weights=weights, parent=pid, ratio=ratio,
                            importance=importance)
                bar.update()
    bar.close()
    return store.frame()
