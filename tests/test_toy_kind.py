"""A task kind added in one file (tests/toy_kind.py) and its registration, with no other module edited, goes
through a study, export and the exported notebook (smoke mode); stored studies keep their kind; confirm on a
kind that cannot be confirmed is one line, exit code 2."""
from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest
import torch

import toy_kind
from notebook_run import generated_code, write_labelled_pngs
from results.export import ExportOptions, export_submission
from run_search import main
from search.checkpoint import load_checkpoint
from search.study import KINDS, StudyConfig, StudyData, run_search

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (conftest)


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    """(study, config, run_dir) of a 2-trial toy study on 64 px synthetic images."""
    root = tmp_path_factory.mktemp("toy-study")
    cfg = StudyConfig(kind=toy_kind.TOY, space="tiny", patches=[0], fragments=[0], n_synthetic=120, max_epochs=1,
                      min_epochs=1, trial_budget_s=1000.0, early_stop=False, device="cpu",
                      cache_dir=str(root / "cache"))
    run_dir = root / "runs" / "toy"
    return run_search(cfg, "toy", 2, run_dir, progress=False), cfg, run_dir


def test_the_toy_kind_is_asked_by_the_study(toy_study):
    study, cfg, run_dir = toy_study
    assert isinstance(cfg.task, toy_kind.ToyKind) and KINDS["toy"] is cfg.task
    data = StudyData(cfg).all(64)
    assert data.target_names == ["badness"] and 0 <= float(data.targets.min()) < float(data.targets.max()) <= 8
    assert StudyData(cfg).val_fingerprint() == study.user_attrs["val_fingerprint"]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    _, payload = load_checkpoint(run_dir / done[0].user_attrs["checkpoint"])
    assert payload["target_names"] == ["badness"]


def test_a_toy_notebook_is_exported_and_runs_in_smoke_mode(toy_study, tmp_path):
    study, cfg, run_dir = toy_study
    result = export_submission(study, cfg, run_dir, ExportOptions("T", date="20260101", smoke=True))
    nb = nbformat.read(result.notebook, as_version=4)
    assert "TRAIN_LABELS = \"/kaggle/input/toy/badness.csv\"" in nb.cells[1].source
    assert "task='toy'" in nb.cells[-1].source and "toy badness model" in nb.cells[0].source
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "def toy_read(" in code and "'toy': NotebookKind(read=toy_read" in code
    assert "def _mos_read(" not in code and "def _pairs_read(" not in code and "class ToyKind" not in code
    assert "`badness.csv`" in (result.notebook.parent / "HOW_TO_RUN.md").read_text()
    labels = write_labelled_pngs(tmp_path, 16, 64, seed=3)
    frame = pd.read_csv(labels)
    pd.DataFrame({"name": frame["name"], "badness": toy_kind.badness(torch.tensor(frame["mos_quality"].to_numpy()))}) \
        .to_csv(tmp_path / "train.csv", index=False)
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        f"TRAIN_IMAGES = TEST_IMAGES = {str(tmp_path / 'imgs')!r}\nTRAIN_LABELS = {str(tmp_path / 'train.csv')!r}\n"
        f"OUT_DIR = {str(tmp_path)!r}\nSMOKE = True\nDEADLINE_S = 120"))
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = pd.read_csv(tmp_path / "badness.csv")
    assert list(out.columns) == ["name", "badness"] and len(out) == 16 and out["badness"].notna().all()
    assert "wrote the badness of 16 test images" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)


def test_the_built_in_notebooks_hold_no_toy_code():
    assert "toy_read" not in generated_code() and "toy_read" not in generated_code(task="pairs")


def test_confirm_on_a_kind_that_cannot_be_confirmed_is_one_line(toy_study, capsys):
    _, _, run_dir = toy_study
    assert main(["confirm", "--study", "toy", "--runs-dir", str(run_dir.parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: confirm does not handle toy studies (study toy): export with --no-confirm"]


@pytest.mark.parametrize("dataset, kind", [("synthetic", "mos"), ("pairs", "pairs"), ("agiqa3k+agiqa1k", "sources")])
def test_stored_settings_without_a_kind_read_as_the_kind_their_dataset_implies(dataset, kind):
    stored = StudyConfig(dataset=dataset, **({"profile": "ntire-pairwise"} if dataset == "pairs" else {})).to_dict()
    del stored["kind"]
    assert StudyConfig.from_dict(stored).kind == kind


def test_a_kind_is_refused_for_a_dataset_it_does_not_take():
    with pytest.raises(ValueError, match="task kind 'mos' does not take --data pairs"):
        StudyConfig(dataset="pairs", kind="mos")
    with pytest.raises(ValueError, match="unknown task kind 'nope'"):
        StudyConfig(kind="nope")
    assert json.loads(json.dumps(StudyConfig(kind="toy").to_dict()))["kind"] == "toy"
