"""The compression stage of a study: prune and quantize the best candidates, measure every variant.

For each candidate trial: int8 and fp16 copies of the trained model; for each ratio, a pruned and
fine-tuned model (re-expressed as a spec) and its int8 and fp16 copies. Every variant is saved under
`runs/NAME/compress/`, reloaded through the common loader, scored on the study's own validation split
and recorded with its change against its parent; variants already recorded are skipped (an
interrupted run resumes) and none over the profile's caps is recorded.
"""
from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from compress.prune import prune_model
from compress.quantize import WEIGHT_FORMATS, Measurement, measure
from compress.variants import Variant, list_variants, record_variant, variant_exists, variants_url
from search.checkpoint import load_checkpoint, save_checkpoint
from search.profiles import get_profile
from search.study import Objective, StudyConfig
from search.train import TrainConfig
from space import ArchSpec, IQANet, count_flops, count_params, spec_summary


def candidates(study: optuna.Study, top_k: int | None = None) -> list[FrozenTrial]:
    """The Pareto front's completed trials, or the `top_k` best by score; best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    chosen = sorted(complete, key=lambda t: -t.values[0])[:top_k] if top_k else study.best_trials
    return sorted(chosen, key=lambda t: -t.values[0])


class _Stage:
    """Per-study state: where variants go, how they are scored, what is already recorded."""

    def __init__(self, study: optuna.Study, cfg: StudyConfig, run_dir: Path, storage_url: str, bar: tqdm):
        self.study, self.run_dir, self.bar = study.study_name, Path(run_dir), bar
        self.url = variants_url(storage_url, run_dir)
        self.profile = get_profile(cfg.profile)
        self.objective = Objective(cfg, run_dir)
        self.device = self.objective.device

    def done(self, vid: str) -> bool:
        return variant_exists(self.url, self.study, vid)

    def within_caps(self, spec: ArchSpec) -> bool:
        caps = self.profile.caps
        return count_params(spec) <= caps.params and (caps.flops is None or count_flops(spec) <= caps.flops)

    def measure(self, path: Path, trial: FrozenTrial) -> Measurement:
        """Score a saved variant on the trial's validation split (refused if the split has changed)."""
        resize = ArchSpec.from_dict(trial.user_attrs["spec"]).input.resize
        _, val_set = self.objective.data(resize)
        stored = trial.user_attrs.get("val_fingerprint")
        if stored is not None and stored != self.objective.val_fingerprint(resize):
            raise ValueError(f"trial {trial.number} was validated on another split than the one computed now "
                             "(data or split code changed): its variants cannot be compared with it")
        return measure(path, val_set, self.profile, trial.user_attrs["train_config"].get("eval_views", 1), self.device)

    def save(self, vid: str, trial: FrozenTrial, kind: str, model: IQANet, spec: ArchSpec, parent_m: Measurement,
             target_names: list[str], weights: str = "fp32", parent: str | None = None, **extra) -> Measurement | None:
        """Save, measure and record one variant; None (nothing recorded) when it is over the caps."""
        if not self.within_caps(spec):
            self.bar.write(f"{vid}: over the {self.profile.name} caps, not recorded")
            return None
        path = save_checkpoint(self.run_dir / "compress" / f"{vid}.pt", model, spec, weights=weights, variant=vid,
                               trial=trial.number, parent=parent, target_names=target_names,
                               train_config=trial.user_attrs["train_config"])
        m = self.measure(path, trial)
        record_variant(self.url, Variant(
            id=vid, study=self.study, trial=trial.number, kind=kind, params=m.params, bytes=m.bytes, score=m.score,
            metrics=m.metrics, path=str(path.relative_to(self.run_dir)), parent=parent, flops=m.flops,
            delta=m.delta(parent_m), summary=spec_summary(spec), spec=spec.to_dict() if kind == "prune" else None, **extra))
        return m

    def quantized(self, base: str, trial: FrozenTrial, model: IQANet, spec: ArchSpec, parent_m: Measurement,
                  names: list[str], parent: str | None, **extra) -> None:
        for weights in WEIGHT_FORMATS:
            vid = f"{base}-{weights}"
            if not self.done(vid):
                self.save(vid, trial, weights, model, spec, parent_m, names, weights=weights, parent=parent, **extra)
            self.bar.update()


def _finetune_config(trial: FrozenTrial, epochs: int | None) -> tuple[TrainConfig, int]:
    """The trial's own training settings at a lower learning rate and without pretraining (the weights
    are trained already), and the fine-tuning epochs (default: a quarter of the epochs the trial ran, at
    least 1)."""
    cfg = TrainConfig.from_dict(trial.user_attrs["train_config"])
    cfg.lr *= 0.3
    cfg.warmup_epochs = 0.0
    cfg.pretrain_epochs = 0
    return cfg, epochs if epochs is not None else max(1, trial.user_attrs.get("epochs_run", 4) // 4)


def compress_study(study: optuna.Study, cfg: StudyConfig, run_dir: Path, storage_url: str,
                   ratios: tuple[float, ...] = (0.3, 0.5), top_k: int | None = None, importance: str = "magnitude",
                   finetune_epochs: int | None = None, iterative_steps: int = 1, global_pruning: bool = False,
                   progress: bool = True) -> pd.DataFrame:
    """Prune (at each ratio) and quantize the candidates (`candidates(study, top_k)`); returns every
    recorded variant of the study (`compress.variants.list_variants`)."""
    run_dir = Path(run_dir)
    chosen = candidates(study, top_k)
    per_trial = len(WEIGHT_FORMATS) + len(ratios) * (1 + len(WEIGHT_FORMATS))
    tag = f"-{importance}" + ("-global" if global_pruning else "") + (f"-it{iterative_steps}" if iterative_steps > 1 else "")
    with tqdm(total=len(chosen) * per_trial, desc=f"compress {study.study_name}", unit="variant", disable=not progress) as bar:
        stage = _Stage(study, cfg, run_dir, storage_url, bar)
        for trial in chosen:
            t = f"t{trial.number}"
            ids = [f"{t}-{w}" for w in WEIGHT_FORMATS] + [f"{t}-prune{r:g}{tag}{s}" for r in ratios for s in ("", "-int8", "-fp16")]
            if all(stage.done(vid) for vid in ids):
                bar.update(per_trial)
                continue
            ckpt = run_dir / trial.user_attrs["checkpoint"]
            model, payload = load_checkpoint(ckpt)
            spec, names = model.spec, payload["target_names"]
            trial_m = stage.measure(ckpt, trial)
            stage.quantized(t, trial, model, spec, trial_m, names, parent=None)
            train_set, _ = stage.objective.data(spec.input.resize)
            ft_cfg, ft_epochs = _finetune_config(trial, finetune_epochs)
            for ratio in ratios:
                pid = f"{t}-prune{ratio:g}{tag}"
                extra = {"ratio": ratio, "importance": importance}
                if stage.done(pid):
                    bar.update()
                    if all(stage.done(f"{pid}-{w}") for w in WEIGHT_FORMATS):
                        bar.update(len(WEIGHT_FORMATS))
                        continue
                    path = run_dir / "compress" / f"{pid}.pt"
                    pruned, pruned_m = load_checkpoint(path)[0], stage.measure(path, trial)
                else:
                    result = prune_model(model, spec, train_set, ratio, importance, global_pruning, iterative_steps,
                                         ft_epochs, ft_cfg, stage.device, cfg.seed + trial.number)
                    pruned = result.model
                    pruned_m = stage.save(pid, trial, "prune", pruned, result.spec, trial_m, names,
                                          left_out=result.left_out, **extra)
                    bar.update()
                    if pruned_m is None:
                        bar.update(len(WEIGHT_FORMATS))
                        continue
                stage.quantized(pid, trial, pruned, pruned.spec, pruned_m, names, parent=pid, **extra)
    return list_variants(stage.url, study.study_name)
