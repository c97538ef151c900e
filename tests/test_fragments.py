"""Fragment recipes beyond the layer (whose cuts and counts `test_space` checks): a study keeps the
fragment grids it was created with, and a fragment model prunes and rebuilds. (The notebook's smoke run
of a fragment recipe is in `test_notebook`.)"""
from __future__ import annotations

import pytest
import torch

from compress import prune_model
from search.study import StudyConfig
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model, count_params


def test_a_study_keeps_the_fragment_grids_it_was_created_with():
    fresh = StudyConfig(space="small")
    assert fresh.fragments == [0, 5] and fresh.search_space().fragments == (0, 5)
    assert StudyConfig(space="small", fragments=[0]).search_space().fragments == (0,)
    stored_before_fragments = {k: v for k, v in fresh.to_dict().items() if k != "fragments"}
    assert StudyConfig.from_dict(stored_before_fragments).search_space().fragments == (0,)  # as it ran
    assert StudyConfig(space="tiny").fragments == [0]


def test_fragment_choices_are_checked_before_a_study_exists():
    with pytest.raises(ValueError, match=r"fragments must be 0 \(off\) or grids of at most 2 cells a side"):
        StudyConfig(space="tiny", fragments=[0, 3])


def test_a_fragment_model_prunes_and_rebuilds():
    spec = ArchSpec(InputSpec(64, 64, fragments=4, fragment=8), StemSpec("conv", 16),
                    [StageSpec("mbconv", 24, 1, 2, 3, 2.0, True), StageSpec("residual", 32, 2, 2, 3, 2.0, True)],
                    HeadSpec("avgstd", 2, 32), act="silu")
    model = build_model(spec)
    pruned = prune_model(model, count_params(spec) // 2)
    assert pruned.params_after == count_params(pruned.spec) < count_params(spec)
    assert pruned.spec.input == spec.input
    rebuilt = build_model(pruned.spec)
    rebuilt.load_state_dict(pruned.model.state_dict(), strict=True)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), pruned.model.eval()(x), atol=1e-5)
