"""Running an exported notebook headless in the tests: a labelled PNG set on disk and the run itself, with
the paths and smoke settings inserted after its Settings cell (one place, so every executed-notebook
test sets the notebook up the same way)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient
from PIL import Image

from results.notebook import RUN_ROOTS, kept_entries, kind_modules, library
from search.data import make_synthetic
from search.train.recipe import Recipe


def generated_code(recipe: Recipe | None = None, task: str = "mos") -> str:
    """A notebook's library as one source (imports, then the modules) for `recipe` (default: every block family
    and input view) and the task kind `task`: what `results.notebook.build_notebook` puts in its cells."""
    imports, cells = library(RUN_ROOTS, kept_entries(recipe, task), kind_modules(task))
    return "\n\n\n".join([imports, *(body for _, body in cells)])


def write_labelled_pngs(folder: Path, n_images: int, size: int, seed: int) -> Path:
    """`n_images` synthetic images as `folder/imgs/*.png` and their MOS as `folder/l.csv` (`name`, `mos_quality`)."""
    data = make_synthetic(n_images=n_images, size=size, seed=seed)
    (folder / "imgs").mkdir()
    for name, img in zip(data.names, data.images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / "imgs" / f"{name}.png")
    labels = folder / "l.csv"
    pd.DataFrame({"name": [f"{n}.png" for n in data.names], "mos_quality": data.targets[:, 0].numpy()}).to_csv(
        labels, index=False)
    return labels


def run_smoke(nb: nbformat.NotebookNode, folder: Path, settings: str) -> pd.DataFrame:
    """Execute `nb` in `folder` in smoke mode with `settings` (paths) after its Settings cell; its predictions."""
    nb.cells.insert(2, nbformat.v4.new_code_cell(f"{settings}\nOUT_DIR = {str(folder)!r}\nSMOKE = True"
                                                 "\nDEADLINE_S = 120"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return pd.read_csv(folder / "predictions.csv")
