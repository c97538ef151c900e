"""The scored training checks itself: a validation part scored every few epochs, the best snapshot kept,
and a stop on evidence that longer training no longer pays.

`BestSnapshot` is what the epoch loop (`search.train.loop.fit`) asks after each validated epoch: it keeps a
copy of the scored weights (the EMA average when the recipe has one) whenever the validation score beats
its best, says when to stop (the loop then anneals the learning rate to zero over a short tail, still
validating), and `restore` puts the best weights back at the end, so a run that overfits ends on its best
validated snapshot, not its last. The curve it saw is kept for printing and for
`export.json`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

MOST_CHECKS = 200
"""A long run is validated about this many times (every `check_every` epochs), so scoring the part costs
a few per cent of training however long it runs."""
MIN_CHECKS = 10
"""A run never stops on evidence before this many validations without a gain."""
ANNEAL_SHARE = 0.25
"""When a run stops on evidence, its learning rate is first annealed to zero over this share of the epochs
it ran (validated all along, the best snapshot still kept): a long schedule stopped early is still at a
high learning rate, and the weights of a run that ends annealed score better than those in mid-flight."""


def validation_score(per_target: dict[str, dict[str, float]]) -> float:
    """One number to keep the best snapshot by, higher is better: the mean over targets of the correlation
    score (max(PLCC,0)+max(SRCC,0)+max(KRCC,0))/3, or of pair accuracy for preference pairs."""
    values = [m["corr_score"] if "corr_score" in m else m["pair_acc"] for m in per_target.values()]
    return float(sum(values) / len(values))


def check_every(planned_epochs: int, most: int = MOST_CHECKS) -> int:
    """Epochs between validations of a run planned at `planned_epochs`: every epoch up to `most` epochs."""
    return max(1, -(-planned_epochs // most))


@dataclass
class BestSnapshot:
    """Keeps the best validated weights of one run and, with `patience`, ends it when the score has not
    improved for as many epochs as it took to reach its best (and for at least `MIN_CHECKS` validations):
    by then the schedule had as long again to pay, and did not. Without `patience` it never stops a run
    early; the best snapshot is still kept."""

    patience: bool = True
    anneal_share: float = ANNEAL_SHARE
    """Epochs of annealing when it stops a run, as a share of the epochs run (0: stop at once)."""
    most_checks: int = MOST_CHECKS
    """About how many validations a run gets, however long it is planned (`check_every`)."""
    curve: list[tuple[int, float]] = field(default_factory=list)
    """(epoch, validation score) of every validation, in order."""
    best_epoch: int = 0
    best_score: float = float("-inf")
    stopped: str = ""
    """Why it ended the run, when it did."""
    every: int = 1
    _state: dict[str, torch.Tensor] | None = None

    def due(self, epoch: int, planned: int, last: bool) -> bool:
        """Whether epoch `epoch` (1-based) of a run now planned at `planned` epochs is validated (`last`:
        it ends the run, e.g. on the clock)."""
        self.every = check_every(planned, self.most_checks)
        return last or epoch >= planned or epoch % self.every == 0

    def __call__(self, model: nn.Module, epoch: int, per_target: dict[str, dict[str, float]]) -> bool:
        """Record epoch `epoch`'s validation of `model` (the scored weights); True to stop training."""
        score = validation_score(per_target)
        self.curve.append((epoch, score))
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        since = epoch - self.best_epoch
        if self.patience and not self.stopped and since >= max(self.best_epoch, MIN_CHECKS * self.every):
            self.stopped = (f"no validation gain for {since} epochs after its best at epoch {self.best_epoch} "
                            "(as long again as it took to reach it)")
            return True
        return False

    def anneal_epochs(self, epoch: int) -> int:
        """Epochs to anneal over when it stops a run at epoch `epoch` (0: none)."""
        return math.ceil(self.anneal_share * epoch) if self.anneal_share else 0

    def restore(self, model: nn.Module) -> None:
        """Load the best snapshot into `model` (nothing when no epoch was validated)."""
        if self._state is not None:
            model.load_state_dict(self._state)
