"""Reliability, round 4: each of these once gave a traceback, read a file it should not, or took a value it
should have refused. A user error is one line `error: ...` naming the file, option or value, exit code 2,
and nothing stored; Ctrl-C is one line about what the command leaves behind, exit code 130."""
from __future__ import annotations

import ast
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from PIL import Image

import run_search
import search.data.decode
import search.study.known
import search.study.workers
from run_search import build_parser, main
from notebook_run import generated_code
from results.notebook import build_notebook
from search.budget import EFFICIENCY_RANGE, BudgetModel
from search.checkpoint import save_checkpoint
from search.data.pairs import read_pairs
from search.study import StudyConfig, StudyData, TrialRecord, default_storage_url, load_study
from search.study.known import FIELD_TYPES, KNOWN_RECIPES, KnownRecipe
from search.study.objective import Objective
from search.study.workers import count_trials, run_search as run_study
from search.train.recipe import Recipe, TrainConfig
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model
from test_inputs import ROOT, dataset

S = ["search", "--runs-dir", "{tmp}/runs", "--device", "cpu", "--cache-dir", "{tmp}/cache", "--n-synthetic", "24",
     "--trials", "1"]


def refused(tmp: Path, argv: list[str], capsys) -> str:
    """Run `argv` (`{tmp}` is `tmp`): exit 2 and one line `error: ...` (returned), nothing under tmp/runs changed."""
    before = sorted((tmp / "runs").rglob("*")) if (tmp / "runs").exists() else None
    assert main([a.format(tmp=tmp) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert (sorted((tmp / "runs").rglob("*")) if (tmp / "runs").exists() else None) == before
    return err


@pytest.mark.parametrize("argv, value", [
    ([*S, "--device", "tpu"], "tpu"),
    ([*S, "--device", "cuda:x"], "cuda:x"),
    (["predict", "--model", "{tmp}/m.pt", "--root", "{tmp}", "--device", "banana"], "banana"),
    (["worker", "--study", "s", "--runs-dir", "{tmp}/runs", "--device", "cuda:x"], "cuda:x"),
])
def test_an_invalid_device_is_one_line_naming_it(tmp_path, capsys, argv, value):
    err = refused(tmp_path, argv, capsys)
    assert f"--device: device {value!r} is not a device: give auto, cpu, cuda or cuda:N" in err, err


@pytest.mark.parametrize("header", [b"", b"SQLite format 3\x00"])
def test_a_damaged_study_storage_is_one_line_naming_the_file_and_left_as_it_was(tmp_path, capsys, header):
    db = tmp_path / "runs" / "u" / "study.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(header + np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    damaged = db.read_bytes()
    for argv in (["report", "--study", "u", "--runs-dir", "{tmp}/runs"], [*S, "--study", "u"]):
        err = refused(tmp_path, argv, capsys)
        assert f"{db}: not a readable SQLite database (file is not a database)" in err, err
    assert db.read_bytes() == damaged


def _damaged(change) -> str:
    """The known recipes as JSON after `change(data)` changed them in place (or "{" when it is None)."""
    if change is None:
        return "{\n"
    data = json.loads(KNOWN_RECIPES.read_text())
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["recipes"][1].update(colour="blue"),
     r"recipe 2: unknown key\(s\) 'colour' \(a recipe has name, params, provenance, cv\)"),
    (lambda d: d["recipes"][0].pop("params"), r"recipe 1: missing key\(s\) 'params'"),
    (lambda d: d.pop("recipes"), r"no list of recipes under the key 'recipes'"),
    (lambda d: d.update(recipes=d["recipes"][0]), r"no list of recipes under the key 'recipes'"),
    (lambda d: d["recipes"][0]["cv"].update(score="high"), r"recipe 1: wrong type of cv\.score"),
    (None, r"not valid JSON \(Expecting property name enclosed in double quotes: line 2"),
])
def test_a_damaged_known_recipes_file_is_one_line_naming_it_and_stores_nothing(tmp_path, capsys, monkeypatch,
                                                                              change, message):
    copy = tmp_path / "known_recipes.json"
    copy.write_text(_damaged(change))
    monkeypatch.setattr(search.study.known, "KNOWN_RECIPES", copy)
    err = refused(tmp_path, S, capsys)
    assert err.startswith(f"error: {copy}: ") and re.search(message, err), err
    assert "--no-seed-recipes" in err and not (tmp_path / "runs").exists()
    assert list(FIELD_TYPES) == [f.name for f in fields(KnownRecipe)]  # the file's recipes are KnownRecipes


def test_without_seed_recipes_a_damaged_known_recipes_file_is_not_read(tmp_path, monkeypatch):
    copy = tmp_path / "known_recipes.json"
    copy.write_text("{")
    monkeypatch.setattr(search.study.known, "KNOWN_RECIPES", copy)
    monkeypatch.setattr(search.study.workers, "run_worker", lambda *args, **kwargs: None)  # no trial to train
    assert main([a.format(tmp=tmp_path) for a in S] + ["--no-seed-recipes"]) == 0
    assert (tmp_path / "runs" / "default" / "study.db").is_file()


@pytest.mark.parametrize("option, values, shown", [
    ("--title", ["画質評価 of AIGC"], "'画' (U+753B), '質' (U+8CEA), '評' (U+8A55), '価' (U+4FA1)"),
    ("--authors", ["José Müller", "Иван"], "'И' (U+0418), 'в' (U+0432), 'а' (U+0430), 'н' (U+043D)"),
])
def test_a_title_or_author_the_template_cannot_set_is_refused_before_the_kit_is_written(tiny_study, capsys, option,
                                                                                        values, shown):
    _, _, run_dir = tiny_study
    paper = run_dir / "paper"
    before = sorted((p, p.stat().st_mtime_ns) for p in paper.rglob("*")) if paper.exists() else None
    argv = ["paper", "--study", run_dir.name, "--runs-dir", str(run_dir.parent), "--pdf", option, *values]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {option}: the paper's LaTeX template (pdflatex) cannot set {shown}: write it in Latin-1 " \
                  "characters (Latin letters, with accents)\n", err
    assert (sorted((p, p.stat().st_mtime_ns) for p in paper.rglob("*")) if paper.exists() else None) == before


def test_latin_1_titles_and_authors_are_set():
    from results.paper.sections import check_title_block

    check_title_block("Qualité d'image: Ærø, Straße", ["José Müller", "Søren"])


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.png", "sub/../../outside.png"])
def test_an_image_name_that_leaves_the_image_folder_is_refused(tmp_path, capsys, name):
    names = [f"img{i}.png" for i in range(40)]
    names[3] = name
    dataset(tmp_path / "data", name=names)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / "outside.png")
    err = refused(tmp_path, [*S, "--data", "agiqa3k", "--root", "{tmp}/data", "--space", "tiny"], capsys)
    assert f"labels.csv: image {name!r} leaves the image folder {tmp_path / 'data' / 'images'}" in err, err


def test_a_pair_image_that_leaves_the_image_folder_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "images" / name)
    pd.DataFrame({"image_a": ["a.png", "a.png"], "image_b": ["b.png", "../pairs.csv"], "winner": ["a", "b"]}).to_csv(
        tmp_path / "pairs.csv", index=False)
    with pytest.raises(ValueError, match=r"pairs\.csv line 3: image '\.\./pairs\.csv' leaves the image folder"):
        read_pairs(tmp_path / "pairs.csv")


def test_min_epochs_above_max_epochs_is_refused_and_a_default_above_it_is_capped(tmp_path, capsys):
    err = refused(tmp_path, [*S, "--min-epochs", "10", "--max-epochs", "5"], capsys)
    assert "--min-epochs 10 is above --max-epochs 5" in err, err
    args = build_parser().parse_args(["search", "--max-epochs", "3", "--device", "cpu"])
    assert run_search._study_config(args).min_epochs == 4  # the default, which trials take as 3 (plan_trial)


@pytest.mark.parametrize("value", ["1e-30", "0.0004", "1.5"])
def test_a_t4_efficiency_outside_its_range_is_refused(tmp_path, capsys, value):
    err = refused(tmp_path, [*S, "--t4-efficiency", value], capsys)
    assert f"t4 efficiency must be in [0.0005, 1] (a hundredth of the calibrated 0.05 to the whole peak), got {value}" \
        in err, err
    assert EFFICIENCY_RANGE == (BudgetModel.efficiency / 100, 1.0) and BudgetModel(efficiency=EFFICIENCY_RANGE[0])


def _agiqa1k(folder: Path, rows: int) -> None:
    (folder / "images").mkdir(parents=True)
    for i in range(rows):
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(folder / "images" / f"x{i}.png")
    pd.DataFrame({"Image": [f"x{i}.png" for i in range(rows)], "Prompt": [f"p{i}" for i in range(rows)],
                  "MOS": np.arange(rows, dtype=float) + 1}).to_excel(folder / "AIGC_MOS_Zscore.xlsx", index=False)


@pytest.mark.parametrize("root, message", [
    ("agiqa3k={tmp}/data,agiqa1k=", r"--root '.*agiqa1k=' gives an empty folder for agiqa1k"),
    ("agiqa3k= ,agiqa1k={tmp}/a1k", r"--root .* gives an empty folder for agiqa3k"),
    ("agiqa3k={tmp}/data,agiqa1k={tmp}/a1k", r"AIGC_MOS_Zscore\.xlsx: a grouped hold-out needs at least 2 groups"),
])
def test_an_empty_root_or_a_one_row_source_is_refused(tmp_path, capsys, root, message):
    dataset(tmp_path / "data")
    _agiqa1k(tmp_path / "a1k", rows=1)
    err = refused(tmp_path, [*S, "--data", "agiqa3k+agiqa1k", "--root", root, "--space", "tiny"], capsys)
    assert re.search(message, err), err


def test_an_empty_root_of_one_dataset_is_refused(tmp_path, capsys):
    err = refused(tmp_path, [*S, "--data", "agiqa3k", "--root", ""], capsys)
    assert "--root is empty: give the dataset folder" in err, err


@pytest.mark.parametrize("command, line", [
    (["confirm", "--study", "s"], "interrupted: the confirm runs already done are kept: rerun the same command"),
    (["export", "--study", "s", "--team", "T"], "interrupted: nothing was exported (the previous export, if any, is "
                                                "as it was; the confirm runs already done are kept)"),
    (["compress", "--study", "s"], "interrupted: the variants already recorded are kept"),
    (["worker", "--study", "s"], "interrupted: a study keeps its finished trials"),
])
def test_ctrl_c_says_what_the_interrupted_command_leaves(tmp_path, capsys, monkeypatch, command, line):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_search, "_open", interrupted)
    assert main([*command, "--runs-dir", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1, err


def test_a_raw_pickle_is_refused_without_torch_warnings(tmp_path, capsys):
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", "--model", str(tmp_path / "raw.pkl"), "--root", str(tmp_path)]) == 2
    assert [str(w.message) for w in caught] == []
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'raw.pkl'}: not a readable checkpoint: not written by torch.save\n", err


def test_flags_show_no_default_in_the_help():
    search = next(a for a in build_parser()._actions if a.dest == "command").choices["search"]
    text = " ".join(search.format_help().split())
    flag = text.split("--no-seed-recipes do not enqueue the known recipes", 1)[1].split(" --batch-size")[0]
    assert "default" not in flag, flag


def _tiny(tmp: Path) -> StudyConfig:
    """A study of tiny models (2 epochs) on the 40 small PNGs of `dataset`, on the CPU, without early stopping."""
    return StudyConfig(dataset="agiqa3k", root=str(dataset(tmp / "data")), space="tiny", max_epochs=2,
                       trial_budget_s=1000.0, early_stop=False, device="cpu", cache_dir=str(tmp / "cache"))


def test_search_shows_the_decoding_and_each_epoch_of_a_trial_and_is_quiet_without_progress(tmp_path, capsys,
                                                                                            monkeypatch):
    monkeypatch.setattr(search.data.decode, "BAR_DELAY_S", 0)  # shown from the start, as a long decode is
    run_study(_tiny(tmp_path), "p", 1, tmp_path / "runs" / "p", seed_recipes=False)
    err = capsys.readouterr().err
    assert re.search(r"decoding agiqa3k at \d+px: .*40/40", err), err
    for epoch in (1, 2):
        assert re.search(rf"study p: .*\[.*trial 0: epoch {epoch}/2, score -?\d\.\d{{3}}, ~\d+ s left\]", err), err
    run_study(_tiny(tmp_path), "q", 1, tmp_path / "runs" / "q", seed_recipes=False, progress=False)
    err = capsys.readouterr().err
    assert "decoding" not in err and "epoch" not in err, err


def test_a_trial_the_time_limit_cut_does_not_count_and_a_resume_runs_it_again(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "runs" / "c"
    with monkeypatch.context() as m:  # the limit passes during the first trial's first epoch
        m.setattr(Objective, "time_up", lambda self: self.stop_at is not None and self.last_trial is not None)
        cut = run_study(_tiny(tmp_path), "c", 1, run_dir, progress=False, time_limit_s=3600, seed_recipes=False)
    (first,) = map(TrialRecord.from_trial, cut.trials)
    assert first.time_limit and first.epochs_run == 1 and not first.counts and count_trials(cut) == 0
    capsys.readouterr()
    study = run_study(_tiny(tmp_path), "c", 1, run_dir, progress=False, seed_recipes=False)
    assert "trial 0 was cut by the time limit: it does not count and runs again first" in capsys.readouterr().err
    again = TrialRecord.from_trial(study.trials[1])
    assert len(study.trials) == 2 and again.state == TrialState.COMPLETE and again.rerun_of == 0
    assert again.recipe_key == first.recipe_key and again.epochs_run == 2 and count_trials(study) == 1


def test_a_study_whose_first_trial_outlasts_the_time_limit_says_what_would_fit_and_reports_what_ran(
        tmp_path, capsys, monkeypatch):
    dataset(tmp_path / "data")
    monkeypatch.setattr(Objective, "time_up", lambda self: self.stop_at is not None and self.last_trial is not None)
    argv = [*S, "--study", "c", "--data", "agiqa3k", "--root", "{tmp}/data", "--space", "tiny", "--max-epochs", "2",
            "--trial-budget", "1000", "--no-early-stop", "--no-seed-recipes", "--time-limit", "1h"]
    assert main([a.format(tmp=tmp_path) for a in argv]) == 0
    cut = r"study 'c' has no completed trial yet: the time limit cut trial 0 after 1 of its 2 epochs \(\d+ s of " \
          r"training here; all 2 would take ~\d+ s\): give a --time-limit well above \d+ s, or a smaller " \
          r"--trial-budget or --max-epochs"
    assert re.search(cut, capsys.readouterr().out)
    err = refused(tmp_path, ["export", "--study", "c", "--team", "T", "--runs-dir", "{tmp}/runs"], capsys)
    assert re.search(cut + "; run \\(or resume\\)", err), err
    assert main(["report", "--study", "c", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert re.search(cut, capsys.readouterr().out)
    trials = pd.read_csv(tmp_path / "runs" / "c" / "report" / "trials.csv")
    assert trials["time_limit"].tolist() == [True] and trials["epochs_run"].tolist() == [1]


def test_the_notebooks_weights_of_another_architecture_name_both_architectures(tmp_path):
    def recipe(*stages: StageSpec) -> Recipe:
        spec = ArchSpec(InputSpec(48, 40, False, 0), StemSpec("conv", 8, 3), list(stages), HeadSpec("avgstd", 1))
        return Recipe(spec, TrainConfig(epochs=1, batch_size=8, crop=40))

    ours, theirs = recipe(StageSpec("mbconv", 16, 2, 2, 3)), recipe(StageSpec("residual", 24, 1, 2, 3))
    weights = save_checkpoint(tmp_path / "w.pth", build_model(theirs.spec), theirs.spec)
    notebook: dict = {}
    exec(compile(generated_code(ours), "notebook", "exec"), notebook)  # the notebook's code: mbconv blocks only
    settings = notebook["Submission"](team="T", date="20260101", out_dir=str(tmp_path), recipe=ours.to_dict(), epochs=1,
                                      deadline_s=60, test_images=str(tmp_path), weights=str(weights))
    with pytest.raises(ValueError) as refusal:
        notebook["run_submission"](settings, log=lambda line: None)
    assert str(refusal.value) == (
        f"WEIGHTS {weights} holds another architecture (conv stem, stages residual 24 x1, 40 px crops) than this "
        "notebook's RECIPE (conv stem, stages mbconv 16 x2, 40 px crops), whose code is all the notebook carries: set "
        "WEIGHTS to weights of this model, or run the notebook exported with those weights")


@pytest.mark.parametrize("options", [{}, {"pair_columns": ["image_a", "image_b", "winner"]},
                                     {"sources": ["agiqa3k", "agiqa1k"]}])
def test_no_notebook_cell_ends_with_an_expression_whose_value_it_would_print(options):
    spec = ArchSpec(InputSpec(48, 40, False, 0), StemSpec("conv", 8, 3),
                    [StageSpec("mbconv", 16, 2, 2, 3), StageSpec("residual", 24, 1, 2, 3)], HeadSpec("avgstd", 2))
    nb = build_notebook("T", "20260101", Recipe(spec, TrainConfig(epochs=1, batch_size=8, crop=40)), ["mos_quality"], 0,
                        600, 10_000_000, **options)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            last = ast.parse(cell["source"]).body[-1]
            assert not isinstance(last, ast.Expr), cell["source"][-300:]



def test_the_same_image_names_with_swapped_contents_are_refused_on_resume_and_a_v2_study_still_resumes(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(search.study.workers, "run_worker", lambda *args, **kwargs: None)  # no trial to train
    images = dataset(tmp_path / "data") / "images"
    argv = [*S, "--study", "w", "--data", "agiqa3k", "--root", "{tmp}/data", "--space", "tiny", "--no-seed-recipes"]
    assert main([a.format(tmp=tmp_path) for a in argv]) == 0
    study, cfg = load_study("w", default_storage_url(tmp_path / "runs" / "w"))
    data = StudyData(cfg)
    study.set_user_attr("val_fingerprint", data.val_fingerprint(version="v2"))  # as a study stored before v3
    assert main([a.format(tmp=tmp_path) for a in argv]) == 0
    assert load_study("w", default_storage_url(tmp_path / "runs" / "w"))[0].user_attrs["val_fingerprint"] \
        == data.val_fingerprint() != data.val_fingerprint(version="v2")
    first, second = (images / "img0.png").read_bytes(), (images / "img1.png").read_bytes()
    (images / "img0.png").write_bytes(second)
    (images / "img1.png").write_bytes(first)
    capsys.readouterr()
    err = refused(tmp_path, argv, capsys)
    assert re.search(r"study 'w' was validated on another split \(fingerprint v3:\w+, now v3:\w+\): its labels or "
                     r"images changed since it was created", err), err


def test_ctrl_c_fails_the_running_trial_and_queues_it_again_and_a_resume_runs_it(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "i"
    with monkeypatch.context() as m:
        def interrupted(self, trial, *args):
            raise KeyboardInterrupt  # Ctrl-C once the trial is planned, as its training starts

        m.setattr(Objective, "_train", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_study(_tiny(tmp_path), "i", 1, run_dir, progress=False, seed_recipes=False)
    study = run_study(_tiny(tmp_path), "i", 1, run_dir, progress=False, seed_recipes=False)
    failed, retry = study.trials
    assert failed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == failed.params


ANY_WORKERS = ("import sys, run_search; run_search.worker_count = lambda workers, device: (workers, None); "
               "sys.exit(run_search.main(sys.argv[1:]))")
"""`run_search.py` with --workers taken as given (not capped at one per CPU core)."""


def _two_workers_training(tmp: Path) -> tuple[subprocess.Popen, dict[int, int]]:
    """`search --workers 2` of long trials of tiny models, once each worker trains one: (the search process,
    the trial number by worker pid)."""
    argv = [sys.executable, "-c", ANY_WORKERS, *[a.format(tmp=tmp) for a in S[:-1]], "4", "--study", "k", "--space",
            "tiny", "--n-synthetic", "48", "--max-epochs", "500", "--min-epochs", "1", "--trial-budget", "1e6",
            "--pretrain-shares", "0", "--no-early-stop", "--no-seed-recipes", "--workers", "2"]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if (tmp / "runs" / "k" / "config.json").exists():
            study = optuna.load_study(study_name="k", storage=default_storage_url(tmp / "runs" / "k"))
            training = {int(r.worker.rsplit(":", 1)[1]): r.number for r in map(TrialRecord.from_trial, study.get_trials(
                states=(TrialState.RUNNING,))) if r.worker and r.curve}
            if len(training) == 2:
                return proc, training
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"two workers never trained at once: {proc.communicate()[1]}")


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _retried(study: optuna.Study, number: int) -> bool:
    return any(t.system_attrs.get("failed_trial") == number for t in study.get_trials(states=(TrialState.WAITING,)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_stop_when_their_parent_is_killed_and_their_trials_are_queued_again(tmp_path):
    proc, training = _two_workers_training(tmp_path)
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while any(map(_alive, training)) and time.time() < deadline:
        time.sleep(0.2)
    orphans = [pid for pid in training if _alive(pid)]
    for pid in orphans:  # started by this test
        os.kill(pid, signal.SIGKILL)
    assert not orphans
    study = optuna.load_study(study_name="k", storage=default_storage_url(tmp_path / "runs" / "k"))
    for number in training.values():
        assert study.trials[number].state == TrialState.FAIL and _retried(study, number)


def test_ctrl_c_after_a_worker_was_killed_is_one_line_and_queues_the_interrupted_trial_again(tmp_path):
    proc, training = _two_workers_training(tmp_path)
    (killed, lost), (_, interrupted) = training.items()
    os.kill(killed, signal.SIGKILL)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    said = [line for line in (part.split("\r")[-1] for part in err.split("\n")) if line.strip()
            and not line.startswith("study k (2 workers):")]  # the progress bar aside
    assert proc.returncode == 130 and len(said) == 1, err
    assert said[0].startswith("interrupted: a study keeps its finished trials (the running ones are retried)"), err
    study = optuna.load_study(study_name="k", storage=default_storage_url(tmp_path / "runs" / "k"))
    assert study.trials[interrupted].state == TrialState.FAIL and _retried(study, interrupted)
    assert study.trials[lost].state == TrialState.RUNNING  # its worker is dead: failed and queued again on resume
