"""The submission notebook, generated from the project's own source, and the files that go with it.

The notebook imports nothing of this project: its library cell is the source of the modules it needs
(spec, layers, model, data container, metrics, losses, augmentation, trainer, checkpoint, recipe,
planner, `results.submission`), read with `inspect`, with every module's imports hoisted once to the
top and the project's own imports dropped, so the notebook and the project cannot drift apart. The
first code cell ("Settings") holds every setting: paths (Kaggle defaults; the columns of the official
AGIQA-3K `data.csv`), team, date, the recipe, the wanted epochs and the deadline; the last cell is one
call of `run_submission`.
"""
from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
from pathlib import Path
from types import ModuleType

import results.submission
import search.train.augment
import search.budget
import search.checkpoint
import search.data.decode
import search.data.imageset
import search.data.pairs
import search.files
import search.train.distort
import search.train.losses
import search.memory
import search.metrics
import search.train.pairs
import search.train.recipe
import search.train.pretrain
import search.train.retrain
import search.train.step
import search.train.loop
import space.count
import space.layers
import space.layers.attention
import space.layers.conv
import space.layers.convnext
import space.layers.heads
import space.layers.mbconv
import space.layers.patches
import space.layers.residual
import space.model
import space.spec
from search.files import atomic_write
from search.train.recipe import Recipe

# In dependency order: each module only uses names defined above it.
SOURCES: list[ModuleType] = [
    space.spec, space.layers.conv, space.layers.mbconv, space.layers.residual, space.layers.convnext,
    space.layers.attention, space.layers.heads, space.layers.patches, space.layers, space.model, space.count, search.data.imageset,
    search.files, search.data.pairs, search.metrics, search.train.losses, search.train.augment, search.train.distort, search.memory, search.train.recipe,
    search.train.step, search.train.pretrain, search.train.loop, search.train.pairs, search.checkpoint, search.budget, search.train.retrain, search.data.decode, results.submission,
]
OWN_PACKAGES = ("space", "search", "compress", "results")
PACKAGES = ("torch", "numpy", "pandas", "scipy", "pillow", "tqdm")
"""What the notebook imports (`requirements.txt` pins the versions export ran with)."""


def _is_own(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "__future__" or (node.module or "").split(".")[0] in OWN_PACKAGES
    return any(a.name.split(".")[0] in OWN_PACKAGES for a in node.names)


def _split_imports(source: str) -> tuple[list[ast.stmt], str]:
    """(the module's top-level imports of other packages, its source without any top-level import)."""
    tree, lines = ast.parse(source), source.splitlines()
    imports, drop = [], set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            drop.update(range(node.lineno, node.end_lineno + 1))
            if not _is_own(node):
                imports.append(node)
    return imports, "\n".join(line for i, line in enumerate(lines, 1) if i not in drop)


def _merged(imports: list[ast.stmt]) -> str:
    """The imports as lines, each module once and each name once, in first-seen order."""
    plain: dict[str, None] = {}
    named: dict[str, dict[str, None]] = {}
    for node in imports:
        for alias in node.names:
            text = alias.name + (f" as {alias.asname}" if alias.asname else "")
            if isinstance(node, ast.Import):
                plain[text] = None
            else:
                named.setdefault(node.module, {})[text] = None
    return "\n".join([f"import {m}" for m in plain] + [f"from {m} import {', '.join(n)}" for m, n in named.items()])


def generated_code() -> str:
    """The notebook's library cell: every import once at the top, then the needed project modules."""
    imports: list[ast.stmt] = []
    bodies = []
    for module in SOURCES:
        module_imports, body = _split_imports(inspect.getsource(module))
        imports += module_imports
        bodies.append(f"# ---- {module.__name__} (generated from the project source) ----\n{body.strip()}")
    return "\n\n".join(["from __future__ import annotations", _merged(imports), *bodies])


_SETTINGS_HEAD = '''# Settings: edit this cell (Kaggle paths by default). The clock of the deadline starts here.
import time
START = time.time()
TEAM = {team!r}
DATE = {date!r}                       # YYYYMMDD, as in TEAM_DATE_model.pth
'''
_SETTINGS_TAIL = '''OUT_DIR = "/kaggle/working"
DEADLINE_S = {deadline_s}                  # everything ends this many seconds after START (the limit is 3 h)
PRECISION = "auto"                    # fp16 + loss scaling on a T4, bf16 on newer GPUs; "fp16" forces the T4 path
SMOKE = False                         # True: tiny images, one epoch (a quick end-to-end check)
PLAN_ONLY = False                     # True: read the data, measure this machine, print the plan, stop
SEED = {seed}
EPOCHS = {epochs}                          # wanted; fewer if the measured plan says they would not fit
RECIPE = {recipe}
'''
CONFIG = _SETTINGS_HEAD + '''TRAIN_IMAGES = "/kaggle/input/agiqa-3k/images"        # folder of training images
TRAIN_LABELS = "/kaggle/input/agiqa-3k/data.csv"      # CSV with an image column and score column(s)
IMAGE_COL = "name"                    # the official AGIQA-3K data.csv columns
SCORE_COLS = {score_cols!r}
TEST_IMAGES = "/kaggle/input/agiqa-3k-test/images"    # every image here is predicted
TEST_LABELS = None                    # optional CSV (IMAGE_COL + SCORE_COLS): metrics on the images it names
''' + _SETTINGS_TAIL

RUN = '''result = run_submission(Submission(
    team=TEAM, date=DATE, train_images=TRAIN_IMAGES, train_labels=TRAIN_LABELS, test_images=TEST_IMAGES,
    out_dir=OUT_DIR, recipe=RECIPE, epochs=EPOCHS, seed=SEED, image_col=IMAGE_COL, score_cols=list(SCORE_COLS),
    test_labels=TEST_LABELS, deadline_s=DEADLINE_S, start=START, precision=PRECISION, smoke=SMOKE,
    plan_only=PLAN_ONLY))
'''
AGIQA3K_COLUMNS = ("mos_quality", "mos_align")

PAIRS_CONFIG = _SETTINGS_HEAD + '''TRAIN_PAIRS = "/kaggle/input/pairs/train/pairs.csv"   # CSV of preference pairs; images beside it (or in images/)
TEST_PAIRS = "/kaggle/input/pairs/test/pairs.csv"     # pairs to choose from; a winner column is optional (pair accuracy)
PAIR_COLUMNS = {pair_columns!r}   # the two images and the winner ('a'/'b' or the file name)
''' + _SETTINGS_TAIL

PAIRS_RUN = '''result = run_pair_submission(PairSubmission(
    team=TEAM, date=DATE, train_pairs=TRAIN_PAIRS, test_pairs=TEST_PAIRS, out_dir=OUT_DIR, recipe=RECIPE,
    epochs=EPOCHS, seed=SEED, pair_columns=list(PAIR_COLUMNS), deadline_s=DEADLINE_S, start=START,
    precision=PRECISION, smoke=SMOKE, plan_only=PLAN_ONLY))
'''


def _cell(kind: str, source: str, index: int, tags: list[str] | None = None) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{index}", "metadata": {"tags": tags} if tags else {}, "source": source}
    return cell if kind == "markdown" else {**cell, "execution_count": None, "outputs": []}


def build_notebook(team: str, date: str, recipe: Recipe, targets: list[str], seed: int,
                   deadline_s: float = 2.5 * 3600, pair_columns: list[str] | None = None) -> dict:
    """The submission notebook of one recipe (its epochs are the ones wanted), as nbformat 4.5 JSON (a
    plain dict: writing it needs no Jupyter package, so export works wherever the search runs). The
    score columns default to the study's targets when they are AGIQA-3K columns, else `mos_quality`.
    With `pair_columns` (a pairs study), the notebook trains from a CSV of preference pairs and writes
    the chosen image of every test pair (`run_pair_submission`)."""
    common = dict(team=team, date=date, seed=seed, epochs=recipe.train.epochs, deadline_s=deadline_s,
                  recipe=repr(recipe.to_dict()))
    if pair_columns is None:
        score_cols = list(targets) if set(targets) <= set(AGIQA3K_COLUMNS) else ["mos_quality"] * len(targets)
        settings, run, writes = CONFIG.format(score_cols=score_cols, **common), RUN, (
            "`predictions.csv` with a score for every image in `TEST_IMAGES`")
        title = "lightweight AIGC image-quality model"
    else:
        settings, run, writes = PAIRS_CONFIG.format(pair_columns=list(pair_columns), **common), PAIRS_RUN, (
            "`choices.csv` with the chosen image of every pair in `TEST_PAIRS` (and the pair accuracy when it "
            "names the winners)")
        title = "comparative image-quality model (preference pairs)"
    cells = [
        _cell("markdown", f"# {team}: {title}, trained from scratch\n\n"
              "Self-contained: the code below was generated from the liqa-nas source. Edit the **Settings** cell "
              "(the first code cell) for your paths. The notebook measures its training speed on this machine, "
              "fits the epochs so that everything ends before `DEADLINE_S`, trains (fp16 autocast with loss "
              f"scaling on a T4), saves and reloads `{team}_{date}_model.pth`, and writes {writes}.", 0),
        _cell("code", settings, 1, tags=["parameters"]),
        _cell("code", generated_code(), 2),
        _cell("code", run, 3),
    ]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}}}


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:  # readable by all, never half-written
        tmp.write_text(text)
    return path


def write_notebook(path: Path, team: str, date: str, recipe: Recipe, targets: list[str], seed: int,
                   pair_columns: list[str] | None = None) -> Path:
    """Write the notebook (`build_notebook`) to `path`, readable by all."""
    return _write(Path(path), json.dumps(build_notebook(team, date, recipe, targets, seed,
                                                        pair_columns=pair_columns), indent=1))


def write_run_files(folder: Path, notebook: str, weights: str, plan, pairs: bool = False) -> None:
    """`requirements.txt` (the versions this export ran with) and `HOW_TO_RUN.md` (environment, steps,
    expected time), which shortlisted teams must send with the notebook; `pairs`: of a pairs notebook."""
    versions = []
    for package in PACKAGES:
        try:
            # without a local tag such as "+cpu": the same release, in the build the GPU machine has
            versions.append(f"{package}=={importlib.metadata.version(package).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    _write(Path(folder) / "requirements.txt", "\n".join(versions) + "\n")
    _write(Path(folder) / "HOW_TO_RUN.md", HOW_TO_RUN.format(
        notebook=notebook, weights=weights, epochs=plan.epochs, minutes=plan.seconds / 60, source=plan.costs.source,
        **(PAIRS_STEPS if pairs else MOS_STEPS)))


HOW_TO_RUN = '''# How to run

**Environment.** A Kaggle notebook with an NVIDIA T4 (16 GB) and Python 3.10 or newer; the packages in
`requirements.txt` (Kaggle's image has them). No internet, no pretrained weights, no external data.

**Steps.**
1. Upload `{notebook}` to Kaggle and attach {data}.
2. In its first code cell (Settings), set {settings}, and `OUT_DIR`.
3. Run all cells. The notebook measures its own speed, fits the epochs to end before `DEADLINE_S`
   (2.5 h by default, of the 3 h allowed), trains from scratch, saves and reloads `{weights}`, and writes
   {output}.

**Expected time.** {epochs} epochs were planned at export, estimated at {minutes:.0f} minutes by {source}.
The notebook prints its own plan after measuring, e.g. "measured 41 s/epoch, 180 epochs fit, expected
end 2 h 11 min", and stops training early, still saving and predicting, if the clock runs out anyway.
To check the plan on a T4 in a few minutes, set `PLAN_ONLY = True`: the notebook reads the data, measures
its speed, prints the plan and stops. `SMOKE = True` runs the whole notebook on tiny images in seconds.
'''

MOS_STEPS = dict(
    data="the AGIQA-3K training images and labels and the test images",
    settings="`TRAIN_IMAGES`, `TRAIN_LABELS`, `TEST_IMAGES` (and `TEST_LABELS` if you have test labels)",
    output="`predictions.csv` (a score for every test image)")
PAIRS_STEPS = dict(
    data="the training pairs CSV with its images and the test pairs CSV with its images",
    settings="`TRAIN_PAIRS`, `TEST_PAIRS` (CSV files, images beside them or in `images/` beside them), `PAIR_COLUMNS`",
    output="`choices.csv` (the chosen image of every test pair; the pair accuracy is printed when the test CSV "
           "names the winners)")
