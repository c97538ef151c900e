"""A preference-pairs study end to end through the command line: search (2 tiny trials) -> report ->
export -> the notebook trains from the pairs CSV and writes the chosen image of every test pair; bad
pairs CSVs and profiles are one line with exit code 2; `predict --pairs`."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

from run_search import main
from results.export import ExportOptions, export_submission
from search.data import make_synthetic
from pair_data import pairs_from_scores
from search.study import StudyConfig, StudyData, TrialRecord, create_study, default_storage_url, load_study
from search.study.storage import check_split


def write_pairs_folder(root: Path, n_images: int = 40, n_pairs: int = 120, seed: int = 5) -> Path:
    """Synthetic images as PNG files in root/images and root/pairs.csv of pairs drawn from their scores
    (the winner written as 'a' or as the file name, alternately)."""
    (root / "images").mkdir(parents=True)
    data = pairs_from_scores(make_synthetic(n_images=n_images, size=64, seed=seed), n_pairs, 0.5, seed=seed)
    names = [f"{n}.png" for n in data.images.names]
    for name, img in zip(names, data.images.images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "images" / name)
    rows = [(names[w], names[lost], "a") if i % 2 else (names[lost], names[w], names[w])
            for i, (w, lost) in enumerate(data.pairs)]
    pd.DataFrame(rows, columns=["image_a", "image_b", "winner"]).to_csv(root / "pairs.csv", index=False)
    return root


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory):
    """(runs dir, data folder, cache dir) of a finished 2-trial pairs study made through the CLI."""
    tmp = tmp_path_factory.mktemp("pairs-study")
    folder = write_pairs_folder(tmp / "data")
    argv = ["search", "--data", "pairs", "--root", str(folder), "--study", "pq", "--runs-dir", str(tmp / "runs"),
            "--space", "tiny", "--trials", "2", "--trial-budget", "5", "--max-epochs", "1", "--no-early-stop",
            "--device", "cpu", "--cache-dir", str(tmp / "cache")]
    assert main(argv) == 0
    return tmp / "runs", folder, tmp / "cache"


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.rstrip("\n")
    return err.rsplit("\n", 1)[-1]


def test_search_scores_pair_accuracy_and_report_shows_it(pairs_run, capsys):
    runs, _, _ = pairs_run
    study, cfg = load_study("pq", f"sqlite:///{runs / 'pq' / 'study.db'}")
    assert cfg.profile == "ntire-pairwise" and cfg.pretrain_shares == [0.0]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        assert set(t.user_attrs["metrics"]) == {"pair_acc"} and 0 <= t.values[0] <= 1
        assert "loss" not in t.params and TrialRecord.from_trial(t).recipe["train"]["pretrain_epochs"] == 0
    capsys.readouterr()
    assert main(["report", "--study", "pq", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "pair_acc" in out and "rmse" not in out and "<- export" in out
    assert "<th>pair_acc (search)</th>" in (runs / "pq" / "report" / "report.html").read_text()
    assert main(["compress", "--study", "pq", "--runs-dir", str(runs)]) == 2
    assert "compress does not handle preference-pair studies" in _last_error(capsys)
    assert main(["confirm", "--study", "pq", "--runs-dir", str(runs)]) == 2  # one line, not a traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: confirm does not handle preference-pair studies"), err


def test_exported_pairs_notebook_trains_and_chooses(pairs_run, tmp_path):
    runs, folder, _ = pairs_run
    study, cfg = load_study("pq", f"sqlite:///{runs / 'pq' / 'study.db'}")
    result = export_submission(study, cfg, runs / "pq", ExportOptions("Team_P", date="20260301", smoke=True))
    assert result.summary["pairs"] > 0
    nb = nbformat.read(result.notebook, as_version=4)
    assert "TRAIN_PAIRS" in nb.cells[1].source and "task='pairs'" in nb.cells[-1].source
    # test pairs with a winner column: the notebook prints their pair accuracy
    pd.read_csv(folder / "pairs.csv").head(20).to_csv(folder / "test.csv", index=False)
    nb.cells.insert(2, nbformat.v4.new_code_cell(
        f"TRAIN_PAIRS = {str(folder / 'pairs.csv')!r}\nTEST_PAIRS = {str(folder / 'test.csv')!r}\n"
        f"OUT_DIR = {str(tmp_path)!r}\nSMOKE = True\nDEADLINE_S = 120"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "epochs fit" in printed and re.search(r"pair accuracy \d\.\d{4} on 20 test pairs", printed), printed
    choices = pd.read_csv(tmp_path / "choices.csv")
    assert list(choices.columns) == ["image_a", "image_b", "chosen", "winner"] and len(choices) == 20
    assert ((choices["chosen"] == choices["image_a"]) | (choices["chosen"] == choices["image_b"])).all()
    assert (tmp_path / "Team_P_20260301_model.pth").is_file()


def test_predict_pairs_writes_the_chosen_image(pairs_run, tmp_path, capsys):
    runs, folder, cache = pairs_run
    ckpt = next((runs / "pq" / "trials").glob("*.pt"))
    frame = pd.read_csv(folder / "pairs.csv").head(10)
    frame[["image_a", "image_b"]].to_csv(folder / "ask.csv", index=False)  # no winner column: choices only
    out = tmp_path / "choices.csv"
    assert main(["predict", "--model", str(ckpt), "--pairs", str(folder / "ask.csv"), "--out", str(out),
                 "--cache-dir", str(cache), "--device", "cpu"]) == 0
    choices = pd.read_csv(out)
    assert list(choices.columns) == ["image_a", "image_b", "chosen"] and len(choices) == 10
    assert choices["chosen"].isin(set(frame["image_a"]) | set(frame["image_b"])).all()
    capsys.readouterr()
    frame.rename(columns={"winner": "pick"}).to_csv(folder / "named.csv", index=False)
    assert main(["predict", "--model", str(ckpt), "--pairs", str(folder / "named.csv"), "--pair-columns", "image_a",
                 "image_b", "pick", "--out", str(out), "--cache-dir", str(cache), "--device", "cpu"]) == 0
    assert re.search(r"pair accuracy \d\.\d{4} on 10 pairs", capsys.readouterr().out)


@pytest.mark.parametrize("edit, extra, message", [
    (lambda f: f.assign(winner=["left"] + list(f["winner"][1:])), [], r"pairs\.csv line 2: winner 'left' is neither"),
    (lambda f: f.assign(image_b=["gone.png"] + list(f["image_b"][1:])), [],
     r"pairs\.csv line 2: image 'gone\.png' not found"),
    (lambda f: f.rename(columns={"winner": "pick"}), [], r"pairs\.csv has no column\(s\) winner; its columns are"),
    (lambda f: f, ["--profile", "icme2026-aigc"],
     r"--data pairs is scored by pair accuracy: use --profile ntire-pairwise"),
    (lambda f: f, ["--pretrain-shares", "0.2"], r"without self-supervised pretraining"),
    (lambda f: f.head(3), [], r"pairs\.csv: 3 pairs over \d+ images split by image into .* each part needs at least 4"),
])
def test_bad_pairs_input_is_one_line_before_any_study(tmp_path, capsys, edit, extra, message):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    names = [f"i{k}.png" for k in range(6)]
    for k, name in enumerate(names):
        Image.new("RGB", (8, 8), (40 * k, 0, 0)).save(folder / "images" / name)
    pairs = pd.DataFrame([(names[k], names[(k + 1) % 6], "a") for k in range(6)],
                         columns=["image_a", "image_b", "winner"])
    edit(pairs).to_csv(folder / "pairs.csv", index=False)
    argv = ["search", "--data", "pairs", "--root", str(folder), "--study", "bad", "--runs-dir", str(tmp_path / "runs"),
            "--space", "tiny", "--trials", "1", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err
    assert not (tmp_path / "runs" / "bad" / "study.db").exists()


def _other_winners(pairs: pd.DataFrame) -> pd.DataFrame:
    """Every pair's loser named as its winner: the same images and split, the opposite labels."""
    won_a = pairs["winner"].isin(["a"]) | (pairs["winner"] == pairs["image_a"])
    return pairs.assign(winner=pairs["image_b"].where(won_a, pairs["image_a"]))


@pytest.mark.parametrize("change", [lambda pairs: pairs.iloc[:-41], _other_winners],
                         ids=["41 pairs fewer", "winners swapped"])
def test_resuming_with_changed_pairs_is_refused(tmp_path, capsys, change):
    """The fingerprint covers the pairs and their winners, not only the validation images' names (which
    swapped winners leave as they were): the study is created (no trial needed), the CSV is changed, and
    the resume is refused."""
    folder = write_pairs_folder(tmp_path / "data")
    cfg = StudyConfig(dataset="pairs", root=str(folder), space="tiny", device="cpu", cache_dir=str(tmp_path / "cache"))
    check_split(create_study(cfg, "fp", default_storage_url(tmp_path / "runs" / "fp")), StudyData(cfg))
    change(pd.read_csv(folder / "pairs.csv")).to_csv(folder / "pairs.csv", index=False)
    assert main(["search", "--data", "pairs", "--root", str(folder), "--study", "fp",
                 "--runs-dir", str(tmp_path / "runs"), "--space", "tiny", "--trials", "1", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    assert re.search(r"study 'fp' was validated on another split \(fingerprint v3:\w+, now v3:\w+\)",
                     _last_error(capsys))
