"""The command line: predict on a folder and on labelled data (bad inputs: tests/test_inputs.py)."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from run_search import main
from search.checkpoint import load_checkpoint
from search.data import load_folder, decode_images, make_synthetic
from search.train.loop import predict


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("agiqa-like")
    (root / "images").mkdir()
    data = make_synthetic(n_images=12, size=64, seed=3)
    for name, img in zip(data.names, data.images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "images" / f"{name}.png")
    pd.DataFrame({"name": [f"{n}.png" for n in data.names], "prompt": data.groups,
                  "mos": data.targets[:, 0].numpy()}).to_csv(root / "labels.csv", index=False)
    return root


def _best_checkpoint(tiny_study):
    study, cfg, run_dir = tiny_study
    best = max(study.best_trials, key=lambda t: t.values[0])
    return run_dir / best.user_attrs["checkpoint"]


def test_predict_folder_matches_the_model(tiny_study, image_dir, tmp_path):
    ckpt = _best_checkpoint(tiny_study)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(ckpt), "--root", str(image_dir / "images"), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 12 and list(frame.columns) == ["image", "score"]
    model, _ = load_checkpoint(ckpt)
    images = decode_images(load_folder(image_dir / "images"), model.spec.input.resize, tmp_path / "cache",
                           progress=False)
    expected = predict(model, images.images, crop=model.spec.input.crop)[:, 0]
    assert np.abs(frame["score"].to_numpy() - expected).max() < 1e-5


def test_predict_with_labels_prints_metrics(tiny_study, image_dir, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    main(["predict", "--model", str(_best_checkpoint(tiny_study)), "--data", "agiqa3k", "--root", str(image_dir),
          "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert "SRCC" in capsys.readouterr().out
    assert {"score", "mos"} <= set(pd.read_csv(out).columns)



def test_compress_with_a_truncated_trial_checkpoint_says_which_file(tiny_study, tmp_path, capsys):
    _, _, run_dir = tiny_study
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("compress", "report", "export"))
    for ckpt in (copy / "trials").glob("*.pt"):
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    assert main(["compress", "--study", run_dir.name, "--runs-dir", str(tmp_path / "runs"), "--top", "1"]) == 2
    last = capsys.readouterr().err.rstrip("\n").rsplit("\n", 1)[-1]  # after the progress bar
    assert re.fullmatch(r"error: .*trials/\d+\.pt: not a readable checkpoint.*central directory\)", last), last
