"""The submission notebook, generated from the project's own source, and the files that go with it.

The notebook imports nothing of this project. Its library is the source of the project's modules,
read with `inspect`, one cell per module under a heading, keeping only what the run calls: starting
from the names the Run cell uses, every top-level definition they reach is kept, in source order, and
nothing else (so a MOS notebook carries no pair code and no budget model). Three choice tables are cut to
the notebook's own entries first (`kept_entries`): `results.submission.NOTEBOOK_KINDS` to its task kind (an entry
registered at run time, `register_kind`, is written from its functions' names, and their module is read too),
`space.layers.BLOCK_FAMILIES` to the block families its architectures use and `space.model.VIEWS` to
their input view (whole-image crops, patches or fragments). Every kept module's imports
of other packages are hoisted once into the first library cell. The first code cell ("Settings") holds
every setting (paths with Kaggle defaults, team, date, the deadline and the parameter cap export
passed, the recipe, the wanted epochs or "fill" with the reason export chose them, a predict-only
switch); a model card describes the model; the last cell is one call of `run_submission`.
"""
from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import pprint
import textwrap
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType

import results.submission
import search.checkpoint
import search.data.decode
import search.data.imageset
import search.data.labels
import search.data.pairs
import search.data.splits
import search.files
import search.memory
import search.metrics
import search.predict
import search.train.augment
import search.train.distort
import search.train.loop
import search.train.losses
import search.train.pairs
import search.train.pretrain
import search.train.recipe
import search.train.retrain
import search.train.snapshot
import search.train.step
import space.count
import space.layers
import space.layers.attention
import space.layers.conv
import space.layers.convnext
import space.layers.fragments
import space.layers.heads
import space.layers.mbconv
import space.layers.patches
import space.layers.residual
import space.model
import space.spec
from results.submission import NOTEBOOK_KINDS, PACKAGES, NotebookKind, environment
from search.files import atomic_write
from search.study.kinds import Kind, register
from search.train.recipe import Recipe
from search.train.retrain import DEFAULT_FINAL, FILL, FINALS, RetrainPlan, check_final, duration
from space.count import count_flops, count_params, part_costs
from space.layers import BLOCK_FAMILIES
from space.model import VIEWS, view_kind
from space.sample import spec_summary

SOURCES: list[ModuleType] = [
    space.spec, space.layers.conv, space.layers.mbconv, space.layers.residual, space.layers.convnext,
    space.layers.attention, space.layers.heads, space.layers.patches, space.layers.fragments, space.layers, space.model,
    space.count,
    search.files, search.data.decode, search.data.labels, search.data.imageset, search.data.pairs, search.data.splits,
    search.metrics, search.train.losses, search.train.augment, search.train.distort, search.memory, search.train.recipe,
    search.train.step, search.train.pretrain, search.train.snapshot, search.train.loop, search.train.retrain,
    search.train.pairs, search.checkpoint, search.predict, results.submission,
]
"""Every module a notebook may need, in dependency order (each uses only names defined above it)."""
OWN_PACKAGES = ("space", "search", "compress", "results")


@dataclass
class _Statement:
    """One top-level statement of a module: its source (with the comments above it and the attribute
    docstring below it), the names it binds and the names it uses."""

    source: str
    binds: set[str]
    uses: set[str]


def _is_own(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "__future__" or (node.module or "").split(".")[0] in OWN_PACKAGES
    return any(a.name.split(".")[0] in OWN_PACKAGES for a in node.names)


def _names(node: ast.AST, ctx: type = ast.AST) -> set[str]:
    """The names `node` mentions (only those read, with `ctx=ast.Load`)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _cut_table(node: ast.Assign | ast.AnnAssign, source: str, keep: set[str], table: dict) -> str:
    """`NAME = {"key": value, ...}` with only the entries of `keep`, as source; an entry the source does not
    hold (added to `table` at run time) written from its value (`_entry_source`)."""
    name = (node.targets[0] if isinstance(node, ast.Assign) else node.target).id
    written = {ast.literal_eval(k): f"    {ast.get_source_segment(source, k)}: {ast.get_source_segment(source, v)},"
               for k, v in zip(node.value.keys, node.value.values)}
    entries = [written.get(key) or f"    {key!r}: {_entry_source(table[key])}," for key in table if key in keep]
    return "\n".join([f"{name} = {{", *entries, "}"])


def _entry_source(value) -> str:
    """A dataclass of functions and plain values (a `NotebookKind`) as source: `Class(field=name, ...)`, each
    function by its name in its module (ValueError for one that is not a module's top-level function)."""
    def ref(v) -> str:
        if not callable(v):
            return repr(v)
        if getattr(inspect.getmodule(v), v.__name__, None) is not v:
            raise ValueError(f"{v!r} is not a top-level function of its module: a notebook cannot include it")
        return v.__name__
    given = ", ".join(f"{f.name}={ref(getattr(value, f.name))}" for f in fields(value))
    return f"{type(value).__name__}({given})"


def kind_modules(task: str) -> list[ModuleType]:
    """The modules outside `SOURCES` that hold the notebook functions of the task kind `task` (a kind
    registered by `register_kind` from another module)."""
    kind = NOTEBOOK_KINDS[task]
    found = [inspect.getmodule(v) for f in fields(kind) if callable(v := getattr(kind, f.name))]
    return list(dict.fromkeys(m for m in found if m not in SOURCES))


def _statements(module: ModuleType, tables: dict[str, set[str]]) -> tuple[list[ast.stmt], list[_Statement]]:
    """(the module's top-level imports of other packages, its other top-level statements); the choice
    tables named in `tables` are cut to their kept entries."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    tree = ast.parse(source)
    imports, out, start = [], [], 0
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports += [] if _is_own(node) else [node]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and out:
            out[-1].source += "\n" + "\n".join(lines[node.lineno - 1:node.end_lineno])  # an attribute docstring
        elif not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)):
            pass  # a call or a block binds nothing a notebook reaches (a kind's module registering it)
        else:
            # the modules hold only these
            binds = {node.name} if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else set().union(
                *map(_names, node.targets if isinstance(node, ast.Assign) else [node.target]))
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            while first > start + 1 and lines[first - 2].lstrip().startswith("#"):
                first -= 1  # the comment lines right above it
            if binds & set(tables):
                table = next(iter(binds))
                text = "\n".join(lines[first - 1:node.lineno - 1]
                                 + [_cut_table(node, source, tables[table], getattr(module, table))])
                uses = _names(ast.parse(text), ast.Load)
            else:
                text, uses = "\n".join(lines[first - 1:node.end_lineno]), _names(node, ast.Load)
            out.append(_Statement(text, binds, uses))
        start = node.end_lineno
    return imports, out


def _merged(imports: list[ast.stmt], used: set[str]) -> str:
    """The imports that bind a name in `used`, as lines, each module once and each name once."""
    plain: dict[str, None] = {}
    named: dict[str, dict[str, None]] = {}
    for node in imports:
        for alias in node.names:
            if (alias.asname or alias.name).split(".")[0] not in used:
                continue
            text = alias.name + (f" as {alias.asname}" if alias.asname else "")
            if isinstance(node, ast.Import):
                plain[text] = None
            else:
                named.setdefault(node.module, {})[text] = None
    return "\n".join([f"import {m}" for m in plain] + [f"from {m} import {', '.join(n)}" for m, n in named.items()])


def library(roots: set[str], tables: dict[str, set[str]],
            extra: list[ModuleType] | None = None) -> tuple[str, list[tuple[ModuleType, str]]]:
    """(the hoisted imports, then each needed module with the source of what `roots` reach in it); `extra`
    modules (`kind_modules`) are read before `results.submission`, whose choice table names their functions."""
    at = SOURCES.index(results.submission)
    modules = [(m, *_statements(m, tables)) for m in [*SOURCES[:at], *(extra or []), *SOURCES[at:]]]
    owner = {name: st for _, _, sts in modules for st in sts for name in st.binds}
    kept: set[int] = set()
    todo = [owner[n] for n in roots]
    while todo:
        st = todo.pop()
        if id(st) not in kept:
            kept.add(id(st))
            todo += [owner[n] for n in st.uses if n in owner]
    imports, used, cells = [], set(), []
    for module, module_imports, sts in modules:
        mine = [st for st in sts if id(st) in kept]
        if mine:
            imports += module_imports
            used |= set().union(*(st.uses for st in mine))
            cells.append((module, _silent("\n\n\n".join(st.source for st in mine))))
    return "from __future__ import annotations\n\n" + _merged(imports, used), cells


def _silent(body: str) -> str:
    """`body` with a closing attribute docstring as comments: a notebook cell shows the value of its last
    statement when that is an expression, so the docstring would be printed as the cell's output."""
    last = ast.parse(body).body[-1]
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Constant) and isinstance(last.value.value, str)):
        return body
    lines = body.splitlines()
    comments = [f"# {line}".rstrip() for line in inspect.cleandoc(last.value.value).splitlines()]
    return "\n".join(lines[:last.lineno - 1] + comments + lines[last.end_lineno:])


RUN_ROOTS = {"run_submission", "Submission"}
"""What the Run cell calls."""


def kept_entries(recipe: Recipe | None, task: str) -> dict[str, set[str]]:
    """The entries of each choice table a notebook keeps: its task kind, the block families and the input
    view of its architectures (None: every family and view)."""
    specs = [r.spec for r in (recipe, recipe.teacher) if r is not None] if recipe else []
    return {"NOTEBOOK_KINDS": {task},
            "BLOCK_FAMILIES": {s.block for spec in specs for s in spec.stages} if recipe else set(BLOCK_FAMILIES),
            "VIEWS": {view_kind(spec) for spec in specs} if recipe else set(VIEWS)}


_SETTINGS_HEAD = '''# Settings: edit this cell (Kaggle paths by default). The clock of the deadline starts here.
import time
START = time.time()
TEAM = {team!r}
DATE = {date!r}                       # YYYYMMDD, as in TEAM_DATE_model.pth
'''
_SETTINGS_TAIL = '''OUT_DIR = "/kaggle/working"
WEIGHTS = None                        # a TEAM_DATE_model.pth to predict with, no training \
(e.g. "/kaggle/input/w/{team}_{date}_model.pth")
DEADLINE_S = {deadline_s:g}                  # everything ends this many seconds after START (the limit is 3 h)
PARAM_CAP = {param_cap}                 # the challenge's parameter cap (printed beside the model's count)
PRECISION = "auto"                    # fp16 + loss scaling on a T4, bf16 on newer GPUs; "fp16" forces the T4 path
SMOKE = False                         # True: tiny images, one epoch (a quick end-to-end check)
PLAN_ONLY = False                     # True: read the data, measure this machine, print the plan, stop
SEED = {seed}
{why}EPOCHS = {epochs}                          # "fill": train until DEADLINE_S; a number: wanted, \
fewer if they would not fit
{finals}FINAL = {final}
{members}RECIPE = {recipe}
'''
_MOS_SETTINGS = '''TRAIN_IMAGES = "/kaggle/input/agiqa-3k/images"        # folder of training images
TRAIN_LABELS = "/kaggle/input/agiqa-3k/data.csv"      # CSV with an image column and score column(s)
IMAGE_COL = "name"                    # the official AGIQA-3K data.csv columns
SCORE_COLS = {score_cols!r}
GROUP_COL = "prompt"                  # groups the validation part of FINAL by prompt (a missing column: by image)
TEST_IMAGES = "/kaggle/input/agiqa-3k-test/images"    # every image here is predicted
TEST_LABELS = None                    # optional CSV (IMAGE_COL + SCORE_COLS): metrics on the images it names
'''
_SOURCES_SETTINGS = '''TRAIN_SOURCES = [                     # trained together, each [format, folder]; \
predicted on the first one's scale
{sources}]
IMAGE_COL = "name"                    # of TEST_LABELS: the official AGIQA-3K data.csv columns
SCORE_COLS = {score_cols!r}
TEST_IMAGES = "/kaggle/input/agiqa-3k-test/images"    # every image here is predicted
TEST_LABELS = None                    # optional CSV (IMAGE_COL + SCORE_COLS): metrics on the images it names
'''
_PAIRS_SETTINGS = '''TRAIN_PAIRS = "/kaggle/input/pairs/train/pairs.csv"   # CSV of preference pairs; \
images beside it (or in images/)
TEST_PAIRS = "/kaggle/input/pairs/test/pairs.csv"     # pairs to choose from; a winner column is optional \
(pair accuracy)
PAIR_COLUMNS = {pair_columns!r}   # the two images and the winner ('a'/'b' or the file name)
'''
_RUN = '''result = run_submission(Submission(
    task={task!r}, team=TEAM, date=DATE, out_dir=OUT_DIR, recipe=RECIPE, epochs=EPOCHS, deadline_s=DEADLINE_S,
    {inputs},
    seed=SEED, start=START, precision=PRECISION, smoke=SMOKE, plan_only=PLAN_ONLY, weights=WEIGHTS, param_cap=PARAM_CAP,
    final=FINAL))
'''
AGIQA3K_COLUMNS = ("mos_quality", "mos_align")


def _cell(kind: str, source: str, index: int, tags: list[str] | None = None) -> dict:
    cell = {"cell_type": kind, "id": f"cell-{index}", "metadata": {"tags": tags} if tags else {}, "source": source}
    return cell if kind == "markdown" else {**cell, "execution_count": None, "outputs": []}


_PATCH_POOLS = {"mean": "the patches' features averaged", "attn": "the patches' features weighted by a learned score",
                "meanstd": "the mean and standard deviation of the patches' features"}
"""How the model card names each `HeadSpec.patch_pool`."""


def model_card(recipe: Recipe, param_cap: int, fill: bool = False) -> str:
    """Markdown: the architecture per part with its exact parameters and FLOPs (`space.count.parts`), the
    totals against the cap, the input policy and the training the notebook repeats (with `fill`: until
    its deadline, the recipe's epochs being what export planned)."""
    spec, cfg = recipe.spec, recipe.train
    rows = part_costs(spec)
    table = ["| part | block | width | depth | params | FLOPs |", "|---|---|---:|---:|---:|---:|",
             f"| stem | {spec.stem.kind} {spec.stem.kernel}x{spec.stem.kernel} | {spec.stem.width} | 1 | "
             f"{rows[0].params:,} | {rows[0].flops:,} |"]
    table += [f"| {row.name} | {s.block} k{s.kernel} | {s.width} | {s.depth} | {row.params:,} | {row.flops:,} |"
              for row, s in zip(rows[1:-1], spec.stages)]
    table += [f"| {rows[-1].name} | {spec.head.pool}, fuse {spec.head.fuse}, hidden {spec.head.hidden} | | | "
              f"{rows[-1].params:,} | {rows[-1].flops:,} |",
              f"| **total** | | | | **{sum(r.params for r in rows):,}** | **{sum(r.flops for r in rows):,}** |"]
    if spec.members > 1:
        table[-1] = table[-1].replace("**total**", "one member")
        table.append(f"| **total: {spec.members} members** | | | "
                     f"| **{count_params(spec):,}** | **{count_flops(spec):,}** |")
    inp = spec.input
    view = (f"{inp.patch} px patches of the {inp.resize} px image ({inp.train_patches} at random per training step, "
            f"a {inp.grid} x {inp.grid} grid at test" + "".join(f", again at {s} px" for s in inp.test_scales)
            + (", each also mirrored" if inp.test_flip else "") + f"; {_PATCH_POOLS[spec.head.patch_pool]}"
            + (f"; plus the whole image at {inp.global_size} px)" if inp.global_size else ")")
            if inp.patch else f"{inp.crop} px crops of the image resized to {inp.resize} px "
            f"({cfg.eval_views} view(s) at test)")
    view = (f"a {inp.fragments} x {inp.fragments} grid of {inp.fragment} px fragments of the {inp.resize} px image, "
            f"spliced into one {inp.view} px view (at random in their cells in training, centred at test)"
            if inp.fragments else view)
    teacher = (f" First a teacher ({spec_summary(recipe.teacher.spec)}, "
               f"{sum(r.params for r in part_costs(recipe.teacher.spec)):,} "
               f"parameters) is trained the same way; the model also learns from its scores "
               f"(weight {cfg.distill_weight:g})."
               if recipe.teacher else "")
    params, flops = count_params(spec), count_flops(spec)
    ensemble = (f" An ensemble: {spec.members} networks of this architecture are trained one after another from "
                "scratch, each with its own seed and an equal share of the time, and an image's score is the mean of "
                "theirs; the counts are of all of them." if spec.members > 1 else "")
    return "\n".join([
        "## Model card", "",
        f"`{spec_summary(spec)}`: **{params:,} parameters** (cap {param_cap:,}), **{flops / 1e9:.3f} GFLOPs** to score "
        "one image (one multiply-add = one FLOP). Input: " + view + "." + ensemble, "", *table, "",
        ('Training from scratch **until `DEADLINE_S`** (`EPOCHS = "fill"`; '

         f"{cfg.epochs} epochs by the T4 budget model at export)" if fill
         else f"Training from scratch: **{cfg.epochs} epochs** planned at export")
        + (f" after {cfg.pretrain_epochs} self-supervised pretraining epochs" if cfg.pretrain_epochs else "")
        + f", batch {cfg.batch_size}, AdamW lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}, loss "
        + " + ".join(f"{w:g} {k}" for k, w in cfg.loss_weights.items())
        + (f", EMA {cfg.ema_decay:g}" if cfg.ema_decay else "") + "." + teacher
        + " The notebook measures this machine and fits the epochs to `DEADLINE_S`. The whole recipe is `RECIPE` "
        "in Settings."])


def _members_note(recipe: Recipe) -> str:
    """The Settings comment above an ensemble's RECIPE: what its `members` mean and how to train one network."""
    n = recipe.spec.members
    return ("" if n == 1 else f'# RECIPE["spec"]["members"] = {n}: {n} networks trained one after another, '
            "each with its own seed and share of the time,\n# their scores averaged (an ensemble, its parameters "
            "counted in full); 1 trains one network\n")


def build_notebook(team: str, date: str, recipe: Recipe, targets: list[str], seed: int, deadline_s: float,
                   param_cap: int, task: str = "mos", pair_columns: list[str] | None = None,
                   sources: list[str] | None = None, epochs: int | str | None = None, why: str | None = None,
                   final: str = DEFAULT_FINAL) -> dict:
    """The submission notebook of one recipe, as nbformat 4.5 JSON (a plain dict: writing it needs no
    Jupyter package, so export works wherever the search runs). `EPOCHS` is `epochs` (a number or
    "fill"; default: the recipe's), with `why` as a comment above it; `FINAL` is `final` (`FINALS`). The
    score columns default to the study's targets when they are AGIQA-3K columns, else `mos_quality`.
    `task` names the task kind
    (`results.submission.NOTEBOOK_KINDS`, its text `TEXTS`): "pairs" trains from a CSV of preference pairs (columns
    `pair_columns`) and writes the chosen image of every test pair; "sources" trains on all of `sources` (the
    formats of a combined study, in order, `TRAIN_SOURCES`) and predicts on the first one's scale (the study's
    kind gives these: `search.study.kinds.Kind.notebook_values`)."""
    text = TEXTS[task]
    epochs = recipe.train.epochs if epochs is None else epochs
    comment = "".join(f"# {line}\n" for line in textwrap.wrap(f"schedule: {why}", 106)) if why else ""
    finals = text.finals or "; ".join(f'"{k}": {v}' for k, v in FINALS.items())
    finals = "".join(f"# {line}\n" for line in textwrap.wrap(f"FINAL, how the scored training ends: {finals}", 106))
    tail = _SETTINGS_TAIL.format(team=team, date=date, seed=seed, epochs=json.dumps(epochs), why=comment,
                                 final=json.dumps(check_final(final)), finals=finals, members=_members_note(recipe),
                                 deadline_s=deadline_s, param_cap=param_cap,
                                 recipe=pprint.pformat(recipe.to_dict(), width=110, sort_dicts=False))
    score_cols = list(targets) if set(targets) <= set(AGIQA3K_COLUMNS) else ["mos_quality"] * len(targets)
    formats = search.data.labels.LOADERS  # each source's Kaggle folder: `LabelFormat.kaggle`
    listed = "".join(f"    [{n!r}, {formats[n].kaggle if n in formats else f'/kaggle/input/{n}'!r}],\n"
                     for n in sources or ())
    inputs = text.settings.format(score_cols=score_cols, sources=listed,
                                  pair_columns=list(pair_columns or search.data.pairs.PAIR_COLUMNS))
    writes, title = text.writes, text.title
    imports, modules = library(RUN_ROOTS, kept_entries(recipe, task), kind_modules(task))
    sources = [
        ("markdown", f"# {team}: {title}, trained from scratch\n\n"
         "Self-contained: the code below was generated from the liqa-nas source. Edit the **Settings** cell "
         "(the first code cell) for your paths, then run all. The notebook measures its training speed on this "
         "machine, fits the epochs so that everything ends before `DEADLINE_S`, trains (fp16 autocast with loss "
         f"scaling on a T4), saves and reloads `{team}_{date}_model.pth` (the submitted weights), writes {writes}, "
         "and records the versions it ran with in `environment.txt`. With `WEIGHTS` set it only loads those "
         "weights and predicts."),
        ("code", _SETTINGS_HEAD.format(team=team, date=date) + inputs + tail),
        ("markdown", model_card(recipe, param_cap, fill=epochs == FILL)),
        ("markdown", "## Library\n\nThe project's modules, only what this run calls. Their imports first."),
        ("code", imports),
    ]
    for module, body in modules:
        doc = (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")
        sources += [("markdown", f"### `{module.__name__}`\n\n{doc}"), ("code", body)]
    sources += [("markdown", "## Run"), ("code", _RUN.format(task=task, inputs=text.inputs))]
    cells = [_cell(kind, text, i, tags=["parameters"] if i == 1 else None) for i, (kind, text) in enumerate(sources)]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}}}


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:  # readable by all, never half-written
        tmp.write_text(text)
    return path


def write_notebook(path: Path, team: str, date: str, recipe: Recipe, targets: list[str], seed: int,
                   deadline_s: float, param_cap: int, task: str = "mos", pair_columns: list[str] | None = None,
                   sources: list[str] | None = None, epochs: int | str | None = None, why: str | None = None,
                   final: str = DEFAULT_FINAL) -> Path:
    """Write the notebook (`build_notebook`) to `path`, readable by all."""
    return _write(Path(path), json.dumps(build_notebook(team, date, recipe, targets, seed, deadline_s, param_cap,
                                                        task=task, pair_columns=pair_columns, sources=sources,
                                                        epochs=epochs, why=why, final=final), indent=1))


def write_run_files(folder: Path, notebook: str, weights: str, plan: RetrainPlan, deadline_s: float,
                    schedule: str, task: str = "mos", trained: str = "not recorded") -> None:
    """`requirements.txt` (the versions this export ran with; torch left to the machine the notebook runs
    on) and `HOW_TO_RUN.md` (environment, steps, the `schedule` export chose and why, expected training
    time, what export's own retrain `trained`), which shortlisted teams must send with the notebook of
    the task kind `task` (its `TEXTS` steps)."""
    versions = ["# the versions export ran with; torch: use the machine's own CUDA build (Kaggle's), 2.3 or newer",
                "torch>=2.3"]
    for package in PACKAGES:
        if package == "torch":
            continue
        try:
            # without a local tag such as "+cpu": the same release, in the build the GPU machine has
            versions.append(f"{package}=={importlib.metadata.version(package).split('+')[0]}")
        except importlib.metadata.PackageNotFoundError:
            continue
    _write(Path(folder) / "requirements.txt", "\n".join(versions) + "\n")
    _write(Path(folder) / "HOW_TO_RUN.md", HOW_TO_RUN.format(
        notebook=notebook, weights=weights, epochs=plan.epochs, time=duration(plan.seconds), source=plan.costs.source,
        schedule=schedule, trained=trained,
        deadline=duration(deadline_s), versions=", ".join(f"{k} {v}" for k, v in environment().items()),
        **TEXTS[task].steps))


HOW_TO_RUN = '''# How to run

**What is submitted.** `{weights}`: the weights the notebook `{notebook}` trains from scratch, saves and
reloads before predicting (no pretrained weights, no external data). A run of the notebook writes a new
`{weights}` beside its outputs; that file is the submission.

**On Kaggle.**
1. Create a notebook from `{notebook}` (File > Import Notebook).
2. Settings panel: Accelerator **GPU T4** (one is enough), Internet **off**.
3. Add Input: {data}.
4. In the first code cell (Settings), set {settings}, and `OUT_DIR` (default `/kaggle/working`).
5. Run all. The notebook measures its own speed, fits the epochs to end before `DEADLINE_S`
   ({deadline} by default, of the 3 h allowed), trains from scratch, saves and reloads `{weights}`, writes
   {output}, and `environment.txt` (the versions it ran with).
To predict with existing weights instead of training, add them as input and set `WEIGHTS` to the `.pth`.

**Schedule.** `EPOCHS` in Settings: {schedule}.

**Expected training time on the T4.** {epochs} epochs were planned at export: training and scoring the
test images, without reading the data, estimated at {time} by {source}.
The notebook prints its own plan after measuring, e.g. "measured 41 s/epoch, 180 epochs fit, expected
end 2 h 11 min", and stops training early, still saving and predicting, if the clock runs out anyway.
When it ends it prints what it trained (epochs run, why it stopped, its validation curve).

**Trained at export** (on the export machine, not the T4): {trained}.
To check the plan on a T4 in a few minutes, set `PLAN_ONLY = True`: the notebook reads the data, measures
its speed, prints the plan and stops. `SMOKE = True` runs the whole notebook on tiny images in seconds.

**Versions.** Used for the export (the machine that searched and exported; `requirements.txt` pins its
package releases): {versions}. Kaggle's image brings its own builds (Python 3.10 or newer); the versions
a run actually used are in the `environment.txt` it writes (Python, torch, CUDA, cuDNN, the GPU, the
packages).
'''

MOS_STEPS = dict(
    data="the AGIQA-3K training images and labels and the test images",
    settings="`TRAIN_IMAGES`, `TRAIN_LABELS`, `TEST_IMAGES` (and `TEST_LABELS` if you have test labels)",
    output="`predictions.csv` (a score for every test image; an unreadable image is named and left empty)")
SOURCES_STEPS = dict(
    data="each training dataset of `TRAIN_SOURCES` (its labels file, its images in `images/`) and the test images",
    settings="each folder of `TRAIN_SOURCES`, `TEST_IMAGES` (and `TEST_LABELS` if you have test labels)",
    output="`predictions.csv` (a score for every test image, on the first training source's scale; an "
           "unreadable image is named and left empty)")
PAIRS_STEPS = dict(
    data="the training pairs CSV with its images and the test pairs CSV with its images",
    settings="`TRAIN_PAIRS`, `TEST_PAIRS` (CSV files, images beside them or in `images/` beside them), `PAIR_COLUMNS`",
    output="`choices.csv` (the chosen image of every test pair; the pair accuracy is printed when the test CSV "
           "names the winners)")


@dataclass(frozen=True)
class NotebookText:
    """What the notebook of a task kind says: its Settings lines for the inputs (formatted with `score_cols`,
    `sources` and `pair_columns`), the `Submission` keywords of its Run cell, its title and what it writes, the
    FINAL strategies it may take (None: every one of `FINALS`) and what HOW_TO_RUN.md says of its data,
    settings and output (`data`, `settings`, `output`)."""

    settings: str
    inputs: str
    title: str
    writes: str
    steps: dict[str, str]
    finals: str | None = None


_MOS_WRITES = "`predictions.csv` with a score for every image in `TEST_IMAGES`"
_MOS_TITLE = "lightweight AIGC image-quality model"
TEXTS: dict[str, NotebookText] = {
    "mos": NotebookText(
        _MOS_SETTINGS, "train_images=TRAIN_IMAGES, train_labels=TRAIN_LABELS, test_images=TEST_IMAGES, "
        "test_labels=TEST_LABELS,\n    image_col=IMAGE_COL, score_cols=list(SCORE_COLS), group_col=GROUP_COL",
        _MOS_TITLE, _MOS_WRITES, MOS_STEPS),
    "sources": NotebookText(
        _SOURCES_SETTINGS, "train_sources=TRAIN_SOURCES, test_images=TEST_IMAGES, test_labels=TEST_LABELS,\n"
        "    image_col=IMAGE_COL, score_cols=list(SCORE_COLS)", _MOS_TITLE, _MOS_WRITES, SOURCES_STEPS),
    "pairs": NotebookText(
        _PAIRS_SETTINGS, "train_pairs=TRAIN_PAIRS, test_pairs=TEST_PAIRS, pair_columns=list(PAIR_COLUMNS)",
        "comparative image-quality model (preference pairs)",
        "`choices.csv` with the chosen image of every pair in `TEST_PAIRS` (and the pair accuracy when it names the "
        "winners)", PAIRS_STEPS, finals='"all" (preference pairs train on all of them)'),
}
"""The notebook's text per task kind, by the names of `results.submission.NOTEBOOK_KINDS` and
`search.study.kinds.KINDS`."""


def register_kind(kind: Kind, notebook: NotebookKind, text: NotebookText) -> Kind:
    """Add a task kind everywhere it is asked, under `kind.name`: its study side (`search.study.kinds.register`),
    its notebook half (`results.submission.NOTEBOOK_KINDS`) and its notebook's text (`TEXTS`)."""
    NOTEBOOK_KINDS[kind.name], TEXTS[kind.name] = notebook, text
    return register(kind)
