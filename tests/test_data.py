"""Datasets: loaders on the real label files, bad input, the decode-once cache, splits, the synthetic set."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from search.data import (
    decode_images, grouped_holdout, grouped_kfold, load_agiqa1k, load_agiqa3k, load_aigiqa20k, load_csv, load_folder,
    load_imageset, make_synthetic,
)
from search.data import decode as decode_module

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
A3K, A1K, A20K = SHARED / "agiqa3k", SHARED / "agiqa1k", SHARED / "aigiqa20k"
needs = lambda path: pytest.mark.skipif(not path.exists(), reason=f"{path} not present")  # noqa: E731


@needs(A3K / "labels.csv")
def test_agiqa3k_real_labels_two_targets():
    table = load_agiqa3k(A3K, targets=["mos_quality", "mos_align"])
    assert len(table) == 2396 and table.frame["group"].nunique() == 241
    assert table.targets == ["mos_quality", "mos_align"]
    assert table.frame["mos_quality"].between(0, 5).all()
    assert (table.image_dir / table.frame["image"].iloc[0]).is_file()


@needs(A3K / "labels.csv")
def test_agiqa3k_official_crlf_data_csv(tmp_path):
    raw = (A3K / "labels.csv").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (tmp_path / "data.csv").write_bytes(raw)
    table = load_agiqa3k(tmp_path)
    assert len(table) == 2396 and table.source.name == "data.csv"
    assert not table.frame["image"].str.contains("\r").any()


@needs(A1K / "AIGC_MOS_Zscore.xlsx")
def test_agiqa1k_real_labels_merge_duplicate_with_warning():
    with pytest.warns(UserWarning, match="dreamStudio_8_9_1_1.jpg"):
        table = load_agiqa1k(A1K / "AIGC_MOS_Zscore.xlsx")
    assert table.frame["image"].is_unique
    raw = pd.read_excel(A1K / "AIGC_MOS_Zscore.xlsx")
    assert len(table) == raw["Image"].nunique() == len(raw) - 1
    dup = raw[raw["Image"] == "dreamStudio_8_9_1_1.jpg"]["MOS"].mean()
    assert table.frame.set_index("image").loc["dreamStudio_8_9_1_1.jpg", "MOS"] == pytest.approx(dup)
    assert "dreamStudio_8_5_0_0.jpg" not in set(table.frame["image"])


@needs(A20K / "info_train.csv")
def test_aigiqa20k_real_labels():
    table = load_aigiqa20k(A20K)
    assert len(table) == 14000 and table.targets == ["mos"]
    assert table.frame["image"].str.endswith(".png").all()
    assert table.frame["group"].str.contains(",").any()  # quoted prompts with commas survive


def _write_images(folder: Path, n: int, size: int = 40) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    data = make_synthetic(n_images=n, size=size, seed=1)
    names = []
    for i in range(n):
        name = f"img_{i}.png"
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(folder / name)
        names.append(name)
    return names


def test_generic_csv_and_missing_column_names_file_and_column(tmp_path):
    names = _write_images(tmp_path / "imgs", 4)
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"file": names, "score": [1.0, 2.0, 3.0, 4.0], "p": ["a", "a", "b", "b"]}).to_csv(csv, index=False)
    table = load_csv(csv, "file", ["score"], group_col="p", image_dir=tmp_path / "imgs")
    assert list(table.frame["group"]) == ["a", "a", "b", "b"]
    with pytest.raises(ValueError, match=r"labels\.csv.*'mos'.*columns found: file, score, p"):
        load_csv(csv, "file", ["mos"])


@pytest.mark.parametrize("bad, shown", [("abc", "'abc'"), ("", "empty")])
def test_bad_score_names_file_column_and_row(tmp_path, bad, shown):
    csv = tmp_path / "data.csv"
    csv.write_text(f"name,prompt,mos_quality\na.jpg,p,1.0\nb.jpg,p,{bad}\n")
    with pytest.raises(ValueError, match=rf"data\.csv: column 'mos_quality', row 3: score {shown}"):
        load_agiqa3k(tmp_path)


def test_duplicated_image_name_is_refused_naming_file_names_and_rows(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("name,prompt,mos_quality\na.jpg,cat,1.0\nb.jpg,dog,2.0\na.jpg,bird,4.5\nc.jpg,cat,3.0\n")
    with pytest.raises(ValueError, match=r"labels\.csv: image name\(s\) listed more than once: a\.jpg \(rows 2, 4\)"):
        load_agiqa3k(tmp_path)


def test_agiqa1k_duplicate_is_merged_with_a_warning(tmp_path):
    frame = pd.DataFrame({"Image": ["x.jpg", "y.jpg", "x.jpg", "z.jpg"], "Prompt": ["p", "q", "p", "r"],
                          "MOS": [1.0, 2.0, 3.0, 4.0]})
    frame.to_excel(tmp_path / "AIGC_MOS_Zscore.xlsx", index=False)
    with pytest.warns(UserWarning, match="x.jpg: 1, 3"):
        table = load_agiqa1k(tmp_path)
    assert list(table.frame["image"]) == ["x.jpg", "y.jpg", "z.jpg"] and table.frame["MOS"].tolist() == [2.0, 2.0, 4.0]


@pytest.mark.parametrize("content, message", [("", "empty file"),
                                              ("\x00\xff\xfe\x01,\x9c\n\x00\xff", "not a readable CSV")])
def test_empty_or_binary_labels_file_is_named(tmp_path, content, message):
    (tmp_path / "labels.csv").write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"labels\.csv: {message}"):
        load_agiqa3k(tmp_path)


@pytest.mark.parametrize("name, mode", [("g.png", "I;16"), ("g.tif", "I")])  # older Pillow opens 16-bit PNGs as I
def test_16_bit_greyscale_is_scaled_not_white(tmp_path, name, mode):
    ramp = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (32, 1))
    (Image.fromarray(ramp) if mode == "I;16" else Image.fromarray(ramp.astype(np.int32), "I")).save(tmp_path / name)
    assert Image.open(tmp_path / name).mode == mode
    decoded = decode_module.decode_image(tmp_path / name, 32)
    assert decoded.shape == (3, 32, 32) and (decoded[0] == decoded[2]).all()
    expected = np.rint(ramp / 257.0)
    assert np.abs(decoded[0].astype(float) - expected).max() <= 1 and decoded.min() == 0 and decoded.max() == 255


def test_missing_and_unreadable_images_are_named(tmp_path):
    names = _write_images(tmp_path / "imgs", 3)
    csv = tmp_path / "l.csv"
    pd.DataFrame({"f": names + ["gone.png"], "s": [1.0, 2.0, 3.0, 4.0]}).to_csv(csv, index=False)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        decode_images(load_csv(csv, "f", ["s"], image_dir=tmp_path / "imgs"), 32, tmp_path / "cache", progress=False)
    (tmp_path / "imgs" / "gone.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="unreadable image .*gone.png"):
        decode_images(load_csv(csv, "f", ["s"], image_dir=tmp_path / "imgs"), 32, tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*")) or not list((tmp_path / "cache").glob("*.tmp"))


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    names = _write_images(tmp_path / "imgs", 5)
    csv = tmp_path / "l.csv"
    pd.DataFrame({"f": names, "s": np.arange(5.0)}).to_csv(csv, index=False)
    table = load_csv(csv, "f", ["s"], image_dir=tmp_path / "imgs")
    first = decode_images(table, 32, tmp_path / "cache", progress=False)
    assert first.images.shape == (5, 3, 32, 32) and first.targets[:, 0].tolist() == [0, 1, 2, 3, 4]

    calls = []
    real = decode_module.decode_image
    monkeypatch.setattr(decode_module, "decode_image", lambda p, s: calls.append(p) or real(p, s))
    again = decode_images(table, 32, tmp_path / "cache", progress=False)
    assert calls == [] and (again.images == first.images).all()

    decode_images(table, 24, tmp_path / "cache", progress=False)  # new size: new cache
    assert len(calls) == 5
    img = Image.new("RGB", (50, 40), (255, 0, 0))
    img.save(tmp_path / "imgs" / names[2])  # a changed file invalidates the cache
    os.utime(tmp_path / "imgs" / names[2], ns=(1, 1))
    changed = decode_images(table, 32, tmp_path / "cache", progress=False)
    assert len(calls) == 10 and changed.images[2, 0].float().mean() > 250
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3 and not list((tmp_path / "cache").glob("*.tmp"))


def test_corrupt_cache_is_rebuilt(tmp_path):
    names = _write_images(tmp_path / "imgs", 3)
    table = load_folder(tmp_path / "imgs")
    assert list(table.frame["image"]) == sorted(names) and table.targets == []
    good = decode_images(table, 16, tmp_path / "cache", progress=False)
    (cache_file,) = (tmp_path / "cache").glob("*.npy")
    cache_file.write_bytes(b"truncated")
    assert (decode_images(table, 16, tmp_path / "cache", progress=False).images == good.images).all()


@needs(A3K / "labels.csv")
def test_decode_real_agiqa3k_images(tmp_path):
    table = load_agiqa3k(A3K)
    table = type(table)(table.name, table.source, table.image_dir, table.frame.head(6), table.targets)
    data = decode_images(table, 32, tmp_path, progress=False)
    assert data.images.shape == (6, 3, 32, 32) and data.images.float().std() > 10


def test_grouped_splits_never_share_a_group():
    groups = np.repeat([f"p{i}" for i in range(40)], np.random.default_rng(0).integers(1, 9, 40))
    train, val = grouped_holdout(groups, 0.2, seed=3)
    assert not set(groups[train]) & set(groups[val])
    assert sorted(np.concatenate([train, val])) == list(range(len(groups)))
    assert 0.1 < len(val) / len(groups) < 0.35
    assert all((a == b).all() for a, b in zip(grouped_holdout(groups, 0.2, 3), (train, val)))
    folds = grouped_kfold(groups, 5, seed=1)
    seen = np.concatenate([v for _, v in folds])
    assert sorted(seen) == list(range(len(groups)))
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
    with pytest.raises(ValueError, match="3 groups cannot make 5 folds"):
        grouped_kfold(["a", "b", "c"], 5)


def test_synthetic_set_is_deterministic_and_monotone_in_severity():
    a, frame = make_synthetic(n_images=120, size=32, seed=5, return_severities=True)
    b = make_synthetic(n_images=120, size=32, seed=5)
    assert (a.images == b.images).all() and (a.targets == b.targets).all()
    assert a.images.dtype.is_floating_point is False and a.images.shape == (120, 3, 32, 32)
    assert a.targets.min() >= 1 and a.targets.max() <= 5
    damage = frame[["smooth", "saturate", "structure", "checker", "blur", "noise", "jpeg"]].sum(axis=1)
    assert stats.spearmanr(damage, frame["mos"])[0] < -0.8
    assert pd.Series(a.groups).value_counts().min() >= 5
    assert not (make_synthetic(n_images=120, size=32, seed=6).images == a.images).all()


def test_load_imageset_dispatch_and_missing_root():
    assert len(load_imageset("synthetic", size=16, n_images=30)) == 30
    with pytest.raises(ValueError, match="needs --root"):
        load_imageset("agiqa3k", None)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_imageset("nope", "x")
    with pytest.raises(ValueError, match="unknown dataset 'folder'"):  # unlabelled images: nothing to train on
        load_imageset("folder", "x")
