"""Reliability, round 4: each of these once gave a traceback, read a file it should not, or took a value it
should have refused. A user error is one line `error: ...` naming the file, option or value, exit code 2,
and nothing stored; Ctrl-C is one line about what the command leaves behind, exit code 130."""
from __future__ import annotations

import json
import pickle
import re
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import run_search
import search.study.known
import search.study.workers
from run_search import build_parser, main
from search.budget import EFFICIENCY_RANGE, BudgetModel
from search.data.pairs import read_pairs
from search.study.known import FIELD_TYPES, KNOWN_RECIPES, KnownRecipe
from test_inputs import dataset

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
    (["confirm", "--study", "s"], "interrupted: the folds already confirmed are kept: rerun the same command"),
    (["export", "--study", "s", "--team", "T"], "interrupted: nothing was exported (the previous export, if any, is "
                                                "as it was; the folds already confirmed are kept)"),
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
