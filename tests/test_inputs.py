"""Bad inputs: each gives one line `error: ...` naming what is wrong, exit code 2, and stores nothing.

Every row runs `run_search.main(argv)` after writing its fixture files under `tmp_path`; `{tmp}` in the
argv is that folder. Rows of `search` also check that no run folder was created.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import run_search
import search.device
import search.memory
from run_search import error_message, main
from search.data import DATASETS
from search.profiles import PROFILES
from search.checkpoint import save_checkpoint
from search.study import StudyConfig, create_study, default_storage_url
from search.study import workers
from search.study.workers import WorkersFailed, report_lost_workers, worker_losses
from space import ArchSpec, HeadSpec, InputSpec, StageSpec, StemSpec, build_model

ROOT = Path(__file__).resolve().parents[1]


def dataset(root: Path, n: int = 40, per_prompt: int = 2, **columns) -> Path:
    """An AGIQA-3K-like folder: `n` small PNGs and labels.csv (`columns` replace or add label columns)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"img{i}.png" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "images" / name)
    labels = {"name": names, "prompt": [f"prompt {i // per_prompt}" for i in range(n)],
              "mos_quality": rng.uniform(1, 5, n), **columns}
    pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)
    return root


def no_files(tmp: Path) -> None:
    pass


def good(tmp: Path) -> None:
    dataset(tmp / "data")


def duplicated(tmp: Path) -> None:
    names = [f"img{i}.png" for i in range(40)]
    names[7] = "img3.png"
    dataset(tmp / "data", name=names)


def empty_labels(tmp: Path) -> None:
    dataset(tmp / "data")
    (tmp / "data" / "labels.csv").write_text("")


def five_images(tmp: Path) -> None:
    dataset(tmp / "data", n=5)


def one_prompt(tmp: Path) -> None:
    dataset(tmp / "data", per_prompt=40)


def missing_image(tmp: Path) -> None:
    dataset(tmp / "data")
    (tmp / "data" / "images" / "img5.png").unlink()


def constant_score(tmp: Path) -> None:
    dataset(tmp / "data", mos_quality=[3.0] * 40)


def text_score(tmp: Path) -> None:
    dataset(tmp / "data", mos_quality=["4.1"] * 10 + ["good"] + ["3.0"] * 29)


def truncated_jpeg(path: Path) -> None:
    """A JPEG cut off halfway: its header opens, its pixels do not decode."""
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncated_image(tmp: Path) -> None:
    """A dataset whose 6th labelled image is a truncated JPEG."""
    names = [f"img{i}.png" for i in range(40)]
    names[5] = "img5.jpg"
    dataset(tmp / "data", name=names)
    truncated_jpeg(tmp / "data" / "images" / "img5.jpg")


def semicolon_labels(tmp: Path) -> None:
    """labels.csv as some spreadsheets export it: ';' separated, ',' as the decimal mark."""
    dataset(tmp / "data")
    frame = pd.read_csv(tmp / "data" / "labels.csv")
    frame.to_csv(tmp / "data" / "labels.csv", sep=";", decimal=",", index=False)


class Payload:
    """A pickle that would create `marker` when unpickled: what a booby-trapped checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def booby_trap(tmp: Path) -> None:
    torch.save({"format": "liqa-nas/1", "spec": Payload(tmp / "ran")}, tmp / "evil.pt")


def trained_elsewhere(tmp: Path) -> None:
    """A checkpoint whose target is 'mos' (AIGIQA-20K's) and an AGIQA-3K folder (mos_quality)."""
    dataset(tmp / "data")
    save_checkpoint(tmp / "model.pt", build_model(SPEC), SPEC, target_names=["mos"])


def checkpoints(tmp: Path) -> None:
    (tmp / "text.pt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(4096)}, tmp / "full.pt")
    raw = (tmp / "full.pt").read_bytes()
    (tmp / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    torch.save({"format": "other/1"}, tmp / "foreign.pt")


def _study(tmp: Path, name: str, **settings) -> None:
    cfg = StudyConfig(space="tiny", n_synthetic=48, device="cpu", cache_dir=str(tmp / "cache"), **settings)
    create_study(cfg, name, default_storage_url(tmp / "runs" / name))


def empty_study(tmp: Path) -> None:
    _study(tmp, "empty")


def moved_dataset(tmp: Path) -> None:
    """A study on a dataset at data-old, since moved to data (no trial yet)."""
    dataset(tmp / "data")
    _study(tmp, "moved", dataset="agiqa3k", root=str(tmp / "data-old"))


SPEC = ArchSpec(InputSpec(16, 16, False), StemSpec("conv", 8, 3), [StageSpec("residual", 8, 1, 2, 3)],
                HeadSpec("avg", 1))
S = ["search", "--runs-dir", "{tmp}/runs", "--device", "cpu", "--cache-dir", "{tmp}/cache"]
A3K = [*S, "--data", "agiqa3k", "--root", "{tmp}/data", "--space", "tiny"]

ROWS = [
    # (id, fixture, argv, message regex)
    ("unknown dataset", no_files, [*S, "--data", "imagenet"],
     r"--data: unknown dataset 'imagenet'; choose from synthetic"),
    ("csv is not a study dataset", good, [*S, "--data", "csv", "--root", "{tmp}/data"],
     r"--data: unknown dataset 'csv'"),
    ("folder is not a study dataset", good, [*S, "--data", "folder", "--root", "{tmp}/data/images"],
     r"--data: unknown dataset 'folder'"),
    ("unknown source of a combined dataset", good,
     [*S, "--data", "agiqa3k+koniq", "--root", "agiqa3k={tmp}/data,koniq=x"],
     r"--data: dataset 'agiqa3k\+koniq': 'koniq' is not a labelled dataset; join two or more of agiqa3k, agiqa1k"),
    ("the synthetic set is no source", no_files, [*S, "--data", "synthetic+agiqa3k"],
     r"'synthetic' is not a labelled dataset"),
    ("a source twice", good, [*S, "--data", "agiqa3k+agiqa3k", "--root", "agiqa3k={tmp}/data"],
     r"dataset 'agiqa3k\+agiqa3k' names a source more than once"),
    ("combined dataset without root", good, [*S, "--data", "agiqa3k+agiqa1k"],
     r"dataset 'agiqa3k\+agiqa1k' needs --root agiqa3k=PATH,agiqa1k=PATH"),
    ("combined dataset, one root", good, [*S, "--data", "agiqa3k+agiqa1k", "--root", "{tmp}/data"],
     r"--root '.*data': '.*data' is not NAME=PATH; give --root agiqa3k=PATH,agiqa1k=PATH"),
    ("combined dataset, a source without root", good, [*S, "--data", "agiqa3k+agiqa1k", "--root", "agiqa3k={tmp}/data"],
     r"--root '.*' gives no folder for agiqa1k; give --root agiqa3k=PATH,agiqa1k=PATH"),
    ("combined dataset, root of another source", good,
     [*S, "--data", "agiqa3k+agiqa1k", "--root", "agiqa3k={tmp}/data,aigiqa20k={tmp}/data"],
     r"'aigiqa20k' is not a source of dataset 'agiqa3k\+agiqa1k'"),
    ("combined dataset, a source's folder missing", good,
     [*S, "--data", "agiqa3k+agiqa1k", "--root", "agiqa3k={tmp}/data,agiqa1k={tmp}/nowhere"],
     r"dataset folder not found: .*nowhere"),
    ("dataset without root", no_files, [*S, "--data", "agiqa3k"], r"dataset 'agiqa3k' needs --root"),
    ("root not found", no_files, [*S, "--data", "agiqa3k", "--root", "{tmp}/nowhere"],
     r"dataset folder not found: .*nowhere"),
    ("labels file missing", no_files, [*S, "--data", "aigiqa20k", "--root", "{tmp}"],
     r"label file not found: .*info_train\.csv"),
    ("empty labels file", empty_labels, A3K, r"labels\.csv: empty file"),
    ("missing target column", good, [*A3K, "--targets", "mos_align"],
     r"labels\.csv: missing column\(s\) 'mos_align'; columns found: name, prompt, mos_quality"),
    ("target given twice", good, [*A3K, "--targets", "mos_quality", "mos_quality"],
     r"given more than once: mos_quality"),
    ("unknown synthetic target", no_files, [*S, "--targets", "sharpness"], r"unknown synthetic target\(s\) sharpness"),
    ("duplicated image name", duplicated, A3K,
     r"labels\.csv: image name\(s\) listed more than once: img3\.png \(rows 5, 9\)"),
    ("text score", text_score, A3K, r"labels\.csv: column 'mos_quality', row 12: score 'good' is not a finite number"),
    ("constant score", constant_score, A3K,
     r"labels\.csv: column 'mos_quality' holds the same score \(3\) in every row"),
    ("listed image missing", missing_image, A3K, r"image listed in .*labels\.csv not found: .*img5\.png"),
    ("5-image dataset", five_images, A3K,
     r"labels\.csv: 5 images in 3 prompts split into .* each part needs at least 4"),
    ("a single prompt", one_prompt, A3K, r"labels\.csv: a grouped hold-out needs at least 2 groups \(prompts\), got 1"),
    ("negative trial budget", no_files, [*S, "--trial-budget", "-5"], r"trial_budget_s must be > 0"),
    ("infinite trial budget", no_files, [*S, "--trial-budget", "inf"],
     r"--trial-budget: must be a finite number, got inf"),
    ("nan validation share", no_files, [*S, "--val-fraction", "nan"],
     r"--val-fraction: must be a finite number, got nan"),
    ("nan T4 efficiency", no_files, [*S, "--t4-efficiency", "NaN"], r"--t4-efficiency: must be a finite number"),
    ("infinite EMA decay", no_files, [*S, "--ema-decays", "0", "inf"], r"--ema-decays: must be a finite number"),
    ("zero T4 efficiency", no_files, [*S, "--t4-efficiency", "0"],
     r"t4 efficiency must be in \[0.0005, 1\] \(a hundredth of .*\), got 0"),
    ("truncated JPEG", truncated_image, A3K, r"labels\.csv: unreadable image .*img5\.jpg: image file is truncated"),
    ("semicolon-separated labels", semicolon_labels, A3K,
     r"labels\.csv: one column 'name;prompt;mos_quality'; its first line is separated by ';': save it with ','"),
    ("zero max epochs", no_files, [*S, "--max-epochs", "0"], r"max_epochs must be at least 1"),
    ("zero workers", no_files, [*S, "--workers", "0"], r"--workers: must be >= 1, got 0"),
    ("zero trials", no_files, [*S, "--trials", "0"], r"--trials: must be >= 1, got 0"),
    ("unknown profile", no_files, [*S, "--profile", "nope"], r"--profile: invalid choice: 'nope'"),
    ("unknown space", no_files, [*S, "--space", "huge"], r"--space: invalid choice: 'huge'"),
    ("bad validation share", no_files, [*S, "--val-fraction", "1.5"], r"0 < val_fraction"),
    ("not a number", no_files, [*S, "--seed", "x"], r"--seed: invalid int value: 'x'"),
    ("study escapes runs", no_files, [*S, "--study", "../../x"], r"--study: '\.\./\.\./x' is not a name"),
    ("study with a separator", no_files, [*S, "--study", "a/b"], r"--study: 'a/b' is not a name"),
    ("? in runs dir", no_files, [*S[:2], "{tmp}/r?uns", *S[3:]], r"--runs-dir .*r\?uns.*SQLite URL would misread"),
    ("runs dir under a file", checkpoints, [*S[:2], "{tmp}/text.pt/runs", *S[3:]], r"text\.pt is a file, not a folder"),
    ("unknown option", no_files, [*S, "--trails", "3"], r"unrecognized arguments: --trails 3"),
    ("worker: no such study", no_files, ["worker", "--study", "nosuch", "--runs-dir", "{tmp}/runs"],
     r"no study storage at sqlite:///.*nosuch/study\.db: run `run_search\.py search --study nosuch` first"),
    ("worker: no such study in a storage", empty_study,
     ["worker", "--study", "nosuch", "--storage", "sqlite:///{tmp}/runs/empty/study.db", "--runs-dir", "{tmp}/runs"],
     r"no study 'nosuch' in sqlite:///.*; it holds empty"),
    ("report: no trials", empty_study, ["report", "--study", "empty", "--runs-dir", "{tmp}/runs"],
     r"study 'empty' has no completed trial yet"),
    ("export: no trials", empty_study, ["export", "--study", "empty", "--team", "T", "--runs-dir", "{tmp}/runs"],
     r"study 'empty' has no completed trial yet"),
    ("export: date escapes", empty_study,
     ["export", "--study", "empty", "--team", "T", "--date", "../../x", "--runs-dir", "{tmp}/runs"],
     r"--date: '\.\./\.\./x' is not a date as YYYYMMDD"),
    ("export: no such day", empty_study,
     ["export", "--study", "empty", "--team", "T", "--date", "20261399", "--runs-dir", "{tmp}/runs"],
     r"--date: '20261399'"),
    ("export: team escapes", empty_study, ["export", "--study", "empty", "--team", "../T", "--runs-dir", "{tmp}/runs"],
     r"--team: '\.\./T' is not a name"),
    ("export: epochs neither a number nor fill", empty_study,
     ["export", "--study", "empty", "--team", "T", "--epochs", "lots", "--runs-dir", "{tmp}/runs"],
     r"--epochs: must be a whole number >= 1 or 'fill', got 'lots'"),
    ("export: zero epochs", empty_study,
     ["export", "--study", "empty", "--team", "T", "--epochs", "0", "--runs-dir", "{tmp}/runs"],
     r"--epochs: must be a whole number >= 1 or 'fill', got '0'"),
    ("export: dataset moved", moved_dataset, ["export", "--study", "moved", "--team", "T", "--runs-dir", "{tmp}/runs"],
     r"dataset folder of study 'moved' is not at .*data-old any more: give --root"),
    ("export --root: the moved dataset is found", moved_dataset,
     ["export", "--study", "moved", "--team", "T", "--root", "{tmp}/data", "--runs-dir", "{tmp}/runs"],
     r"study 'moved' has no completed trial yet"),
    ("export --root: not there either", moved_dataset,
     ["export", "--study", "moved", "--team", "T", "--root", "{tmp}/elsewhere", "--runs-dir", "{tmp}/runs"],
     r"dataset folder not found: .*elsewhere"),
    ("compress --root: the moved dataset is found", moved_dataset,
     ["compress", "--study", "moved", "--root", "{tmp}/data", "--runs-dir", "{tmp}/runs"],
     r"study 'moved' has no completed trial yet"),
    ("compress: bad ratio", empty_study,
     ["compress", "--study", "empty", "--ratios", "1.5", "--runs-dir", "{tmp}/runs"],
     r"--ratios: must be in \(0, 1\), got 1\.5"),
    ("predict: text .pt", checkpoints, ["predict", "--model", "{tmp}/text.pt", "--root", "{tmp}"],
     r"text\.pt: not a readable checkpoint"),
    ("predict: truncated .pt", checkpoints, ["predict", "--model", "{tmp}/truncated.pt", "--root", "{tmp}"],
     r"truncated\.pt: not a readable checkpoint"),
    ("predict: foreign .pt", checkpoints, ["predict", "--model", "{tmp}/foreign.pt", "--root", "{tmp}"],
     r"foreign\.pt: not a liqa-nas/1 checkpoint \(format=other/1\)"),
    ("predict: booby-trapped .pt", booby_trap, ["predict", "--model", "{tmp}/evil.pt", "--root", "{tmp}"],
     r"evil\.pt: not loaded: it holds a reference to posix\.system, and unpickling it could run code"),
    ("predict: checkpoint of another dataset", trained_elsewhere,
     ["predict", "--model", "{tmp}/model.pt", "--data", "agiqa3k", "--root", "{tmp}/data"],
     r"labels\.csv: missing column\(s\) 'mos'; .*the score column\(s\) 'mos' are the targets the checkpoint "
     r".*model\.pt was trained on"),
    ("predict: no checkpoint", no_files, ["predict", "--model", "{tmp}/x.pt", "--root", "{tmp}"],
     r"checkpoint not found"),
    ("predict: csv", no_files, ["predict", "--model", "{tmp}/x.pt", "--root", "{tmp}", "--data", "csv"],
     r"--data: invalid choice: 'csv'"),
]


@pytest.mark.parametrize("fixture, argv, message", [pytest.param(*row[1:], id=row[0]) for row in ROWS])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, fixture, argv, message):
    fixture(tmp_path)
    before = sorted((tmp_path / "runs").rglob("*")) if (tmp_path / "runs").exists() else None
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    after = sorted((tmp_path / "runs").rglob("*")) if (tmp_path / "runs").exists() else None
    assert after == before  # no run folder, storage or file was created


def test_read_only_runs_dir_is_refused_before_anything_is_created(tmp_path, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(run_search.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    assert main(["search", "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]) == 2
    assert f"cannot write to {tmp_path} (read-only)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_storage_that_cannot_be_opened_is_a_sentence(tmp_path):
    with pytest.raises(sqlite3.OperationalError) as info:
        sqlite3.connect(tmp_path)  # a folder, not a database file
    assert error_message(info.value) == ("the study storage cannot be used (unable to open database file): check that "
                                         "the run directory (--runs-dir) or the --storage database exists and can be "
                                         "written")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="trial_budget_s must be > 0"):
        main(["--debug", "search", "--trial-budget", "-5", "--runs-dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        main(["search", "--data", "agiqa3k", "--root", str(tmp_path / "x"), "--runs-dir", str(tmp_path), "--debug"])


@pytest.mark.parametrize("argv, message", [
    (["search", "--data", "agiqa3k", "--root", "{tmp}/data", "--runs-dir", "{tmp}/runs"],
     "listed more than once: img3.png"),
    (["predict", "--model", "{tmp}/truncated.pt", "--root", "{tmp}"], "not a readable checkpoint"),
])
def test_subprocess_exit_code_and_no_traceback(tmp_path, argv, message):
    duplicated(tmp_path)
    checkpoints(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "run_search.py"), *[a.format(tmp=tmp_path) for a in argv]],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_help_names_every_command_option_default_profile_and_dataset():
    parser = run_search.build_parser()
    top = parser.format_help()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in commands:
        assert f"    {name} " in top, name  # one line each under "commands"
    for name, p in commands.items():
        text = " ".join(p.format_help().split())
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
            nothing_to_show = (any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.required
                               or action.nargs == 0)  # a flag: its default is not giving it
            assert (nothing_to_show or "(default: " in " ".join(action.help.split())
                    or f"(default: {action.default})" in text), \
                f"{name} {action.option_strings[0]} does not show its default"
    search = " ".join(commands["search"].format_help().split())
    for profile in PROFILES:
        assert profile in search
    for data in DATASETS:
        assert data in search


def test_a_space_whose_largest_input_cannot_be_held_is_refused_before_the_study(tmp_path, capsys, monkeypatch):
    dataset(tmp_path / "data")
    monkeypatch.setattr(search.memory, "host_available_bytes", lambda: 40 * 3 * 300 * 300)  # 40 images fit at 268 px
    argv = ["search", "--data", "agiqa3k", "--root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"),
            "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "40 images of agiqa3k (the largest input the default space may choose; --patches 0" in err
    assert "at 512 px" in err and err.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_a_booby_trapped_checkpoint_runs_nothing(tmp_path):
    booby_trap(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "predict", "--model", str(tmp_path / "evil.pt"),
                           "--root", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "could run code" in proc.stderr, proc.stderr
    assert not (tmp_path / "ran").exists()


def test_a_refused_first_run_leaves_nothing_so_the_corrected_command_works(tmp_path, capsys, monkeypatch):
    """An unreadable image, a bad efficiency and a missing GPU are each refused before the study or its
    settings are written; the corrected command then creates the study as if nothing had happened."""
    truncated_image(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in A3K] + ["--trials", "1", "--max-epochs", "1", "--trial-budget", "5"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for extra, message in (([], "image file is truncated"), (["--t4-efficiency", "0"], "t4 efficiency must be in"),
                           (["--device", "cuda"], "CUDA is not available")):
        if extra != []:
            Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / "images" / "img5.jpg")
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "runs").exists()
    assert main(argv) == 0
    assert (tmp_path / "runs" / "default" / "study.db").is_file()


def test_predict_scores_every_readable_image_and_names_the_rest(tmp_path, capsys):
    trained_elsewhere(tmp_path)
    folder = tmp_path / "data" / "images"
    truncated_jpeg(folder / "bad.jpg")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--root", str(folder), "--out", str(out),
                 "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]  # the rest: a progress bar
    assert warned == ["warning: 1 unreadable image(s) left out, their scores left empty: bad.jpg"], warned
    frame = pd.read_csv(out).set_index("image")
    assert len(frame) == 41 and np.isnan(frame.loc["bad.jpg", "score"])
    assert np.isfinite(frame.drop(index="bad.jpg")["score"]).all()


def test_workers_beyond_the_machine_are_capped_with_a_message(monkeypatch):
    monkeypatch.setattr(search.device.os, "cpu_count", lambda: 2)
    assert search.device.worker_count(8, "cpu") == (2, "--workers 8 capped at 2 "
                                                       "(at most one per CPU core on this machine)")
    assert search.device.worker_count(2, "cpu") == (2, None)
    assert search.device.worker_count(None, "cpu") == (1, None)


def test_a_lost_worker_is_named_and_fails_the_command_only_short_of_the_target(capsys):
    assert worker_losses([0, -signal.SIGKILL, 1]) == "worker 2 died (killed by SIGKILL); worker 3 exited with status 1"
    report_lost_workers([0, 0], reached=False, n_trials=3)
    assert capsys.readouterr().err == ""
    report_lost_workers([-signal.SIGKILL, 0], reached=True, n_trials=3)
    assert capsys.readouterr().err == "worker 1 died (killed by SIGKILL); the study reached its 3 trials without it\n"
    with pytest.raises(WorkersFailed,
                       match=r"^worker 1 died \(killed by SIGKILL\), its trial will be retried on resume"):
        report_lost_workers([-signal.SIGKILL, 0], reached=False, n_trials=3)


@pytest.mark.parametrize("raised, code, line", [
    (WorkersFailed("worker 2 died (killed by SIGKILL), its trial will be retried on resume"), 1,
     "error: worker 2 died (killed by SIGKILL), its trial will be retried on resume\n"),
    (KeyboardInterrupt(), 130, "interrupted: a study keeps its finished trials"),
])
def test_a_dead_worker_or_ctrl_c_is_one_line_without_traceback(tmp_path, capsys, monkeypatch, raised, code, line):
    def run(*args, **kwargs):
        raise raised

    monkeypatch.setattr(run_search, "run_search", run)
    assert main(["search", "--runs-dir", str(tmp_path), "--device", "cpu", "--n-synthetic", "24"]) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1, err


def test_ctrl_c_in_a_worker_process_ends_it_quietly(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "run_worker", interrupted)
    with pytest.raises(SystemExit) as info:
        workers._worker_entry("sqlite:///x.db", "s", 1, "runs", {}, 1, None)
    assert info.value.code == 130


def test_ctrl_c_during_a_search_ends_with_one_line_and_exit_130(tmp_path):
    argv = [sys.executable, str(ROOT / "run_search.py"), "search", "--runs-dir", str(tmp_path / "runs"),
            "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--n-synthetic", "48", "--trials", "50"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.time() + 120
    while not (tmp_path / "runs" / "default" / "config.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # into the first trial's training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    said = [line.split("\r")[-1] for line in err.splitlines() if not line.split("\r")[-1].startswith("study default:")]
    assert proc.returncode == 130 and said[-1].startswith("interrupted: a study keeps its finished trials"), err
    assert len([line for line in said if line.strip()]) == 1 and "Traceback" not in err and "failed" not in err, err
