"""A self-contained Kaggle notebook generated from the project's own source.

The notebook imports nothing of this project: its code cell is the source of the modules it needs
(spec, layers, model, data container, metrics, losses, augmentation, trainer, checkpoint), read with
`inspect` and stripped of the project's own imports, so the notebook and the project cannot drift
apart. The first cell holds every setting (paths with Kaggle-style defaults, team, date, the spec and
the training recipe) and can be edited or overridden.
"""
from __future__ import annotations

import ast
import inspect
from types import ModuleType

import search.augment
import search.checkpoint
import search.data.cache
import search.data.imageset
import search.distort
import search.losses
import search.metrics
import search.train
import space.layers
import space.layers.attention
import space.layers.conv
import space.layers.convnext
import space.layers.heads
import space.layers.mbconv
import space.layers.residual
import space.model
import space.spec

# In dependency order: each module only uses names defined above it.
SOURCES: list[ModuleType] = [
    space.spec, space.layers.conv, space.layers.mbconv, space.layers.residual, space.layers.convnext,
    space.layers.attention, space.layers.heads, space.layers, space.model, search.data.imageset, search.metrics,
    search.losses, search.augment, search.distort, search.train, search.checkpoint,
]
OWN_PACKAGES = ("space", "search", "compress", "results")


def _strip_own_imports(source: str) -> str:
    """Drop `from __future__` and imports of the project's packages (their names are defined in the
    same notebook namespace), keeping every other line as written."""
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module == "__future__" or (node.module or "").split(".")[0] in OWN_PACKAGES):
            drop.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in OWN_PACKAGES for a in node.names):
            drop.update(range(node.lineno, node.end_lineno + 1))
    return "\n".join(line for i, line in enumerate(source.splitlines(), 1) if i not in drop)


def _imports(source: str) -> str:
    """The module's own import lines other than the project's (for a function copied alone)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    keep = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return _strip_own_imports("\n".join("\n".join(lines[n.lineno - 1:n.end_lineno]) for n in keep))


def generated_code() -> str:
    """The notebook's library cell: the needed project modules, concatenated."""
    parts = ["from __future__ import annotations"]
    for module in SOURCES:
        parts.append(f"# ---- {module.__name__} (generated from the project source) ----")
        parts.append(_strip_own_imports(inspect.getsource(module)))
    parts.append("# ---- search.data.cache.decode_image ----")
    parts.append(_imports(inspect.getsource(search.data.cache)))
    parts.append(inspect.getsource(search.data.cache.decode_image))
    return "\n\n".join(parts)


CONFIG = '''# Settings: edit here (Kaggle paths by default).
TEAM = {team!r}
DATE = {date!r}                       # YYYYMMDD, as in TEAM_DATE_model.pth
TRAIN_IMAGES = "/kaggle/input/agiqa-3k/images"        # folder of training images
TRAIN_LABELS = "/kaggle/input/agiqa-3k/data.csv"      # CSV with an image column and score column(s)
IMAGE_COL = "name"
SCORE_COLS = {targets!r}
TEST_IMAGES = "/kaggle/input/agiqa-3k-test/images"    # folder of images to score
TEST_LABELS = None                    # optional CSV (IMAGE_COL + SCORE_COLS) to report metrics
OUT_DIR = "/kaggle/working"
SMOKE = False                         # True: tiny images, one epoch (a quick end-to-end check)
SEED = {seed}
EPOCHS = {epochs}
SPEC = {spec}
TRAIN_CONFIG = {train_config}
TEACHER_SPEC = {teacher_spec}            # distillation teacher, trained here first (None: no teacher)
TEACHER_CONFIG = {teacher_config}
'''

RUN = '''import os, time
from pathlib import Path
import numpy as np, pandas as pd, torch

spec = ArchSpec.from_dict(SPEC)
if SMOKE:  # small images and one epoch: checks the whole notebook in seconds
    spec.input.crop = 32 if spec.input.crop == spec.input.resize else 24
    spec.input.resize = 32
cfg = TrainConfig.from_dict(TRAIN_CONFIG)
cfg.epochs, cfg.seed, cfg.crop = (1 if SMOKE else EPOCHS), SEED, spec.input.crop
if SMOKE:
    cfg.pretrain_epochs = min(cfg.pretrain_epochs, 1)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def read_images(folder, names, size):
    return torch.from_numpy(np.stack([decode_image(Path(folder) / n, size) for n in names]))


labels = pd.read_csv(TRAIN_LABELS)
names = [str(n).strip() for n in labels[IMAGE_COL]]
train = ImageSet(read_images(TRAIN_IMAGES, names, spec.input.resize),
                 torch.tensor(labels[SCORE_COLS].to_numpy(dtype=np.float32)),
                 np.asarray(names, dtype=object), names, list(SCORE_COLS))
print(f"{len(train)} training images at {spec.input.resize}px on {device}")

start = time.time()
teacher = None
if TEACHER_SPEC:  # trained from scratch on the same images; it only teaches, and is not saved
    teacher_spec = ArchSpec.from_dict(TEACHER_SPEC)
    teacher_spec.input.resize, teacher_spec.input.crop = spec.input.resize, spec.input.crop
    teacher_cfg = TrainConfig.from_dict(TEACHER_CONFIG)
    teacher_cfg.epochs, teacher_cfg.seed, teacher_cfg.crop = cfg.epochs, SEED + 1, spec.input.crop
    teacher_cfg.pretrain_epochs = min(teacher_cfg.pretrain_epochs, 1) if SMOKE else teacher_cfg.pretrain_epochs
    seed_everything(teacher_cfg.seed)
    teacher = build_model(teacher_spec)
    train_model(teacher, train, None, teacher_cfg, device=device, progress=True)
    print(f"trained the teacher in {time.time() - start:.0f}s")

seed_everything(SEED)
model = build_model(spec)
result = train_model(model, train, None, cfg, device=device, progress=True, teacher=teacher)  # fp16 autocast on a T4
print(f"trained {result.epochs_run} epochs in {time.time() - start:.0f}s")

weights = Path(OUT_DIR) / f"{TEAM}_{DATE}_model.pth"
save_checkpoint(weights, model.cpu(), spec, target_names=list(SCORE_COLS), train_config=cfg.to_dict())
model, _ = load_checkpoint(weights)          # reload the saved weights: what is submitted is what predicts
print(f"saved and reloaded {weights}")

test_names = sorted(p.name for p in Path(TEST_IMAGES).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
pred = predict(model, read_images(TEST_IMAGES, test_names, spec.input.resize), device=device,
               crop=spec.input.crop, views=cfg.eval_views)
out = pd.DataFrame({"image": test_names, **{f"pred_{c}" if len(SCORE_COLS) > 1 else "score": pred[:, i] for i, c in enumerate(SCORE_COLS)}})
out.to_csv(Path(OUT_DIR) / "predictions.csv", index=False)
print(f"wrote {Path(OUT_DIR) / 'predictions.csv'} ({len(out)} images)")
if TEST_LABELS:
    truth = pd.read_csv(TEST_LABELS).set_index(IMAGE_COL).loc[test_names]
    for i, c in enumerate(SCORE_COLS):
        print(c, {k: round(v, 4) for k, v in iqa_metrics(pred[:, i], truth[c].to_numpy()).items()})
'''


def _cell(kind: str, source: str, index: int, tags: list[str] | None = None) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{index}", "metadata": {"tags": tags} if tags else {}, "source": source}
    return cell if kind == "markdown" else {**cell, "execution_count": None, "outputs": []}


def build_notebook(team: str, date: str, spec: dict, train_config: dict, targets: list[str], epochs: int,
                   seed: int, teacher: tuple[dict, dict] | None = None) -> dict:
    """The submission notebook for one recipe (spec + training config, and the (spec, training config)
    of a distillation teacher if any), as nbformat 4.5 JSON (a plain dict: writing it needs no Jupyter
    package, so export works wherever the search runs)."""
    cells = [
        _cell("markdown", f"# {team}: lightweight AIGC image-quality model, trained from scratch\n\n"
              "Self-contained: the code below was generated from the liqa-nas source. Edit the first cell for "
              "your paths; the notebook trains (fp16 autocast on a T4), saves and reloads "
              f"`{team}_{date}_model.pth`, and writes `predictions.csv`.", 0),
        _cell("code", CONFIG.format(team=team, date=date, targets=list(targets), seed=seed, epochs=epochs,
                                    spec=repr(spec), train_config=repr(train_config),
                                    teacher_spec=repr(teacher[0] if teacher else None),
                                    teacher_config=repr(teacher[1] if teacher else None)), 1, tags=["parameters"]),
        _cell("code", generated_code(), 2),
        _cell("code", RUN, 3),
    ]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}}}
