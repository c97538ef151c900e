"""The paper kit: every number in method.tex is the study's own record, and paper.tex compiles."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from optuna.trial import TrialState

from compress.variants import Variant, VariantStore, record_variant
from results.candidates import add_composite, rank, trials_frame
from results.paper import tex as paper_tex_module
from results.paper import compile_paper, refs_bib, tex_escape, write_paper_kit
from results.front import pareto_front
from search.profiles import get_profile
from search.study import TrialRecord
from space import ArchSpec, build_model, count_flops, count_params

VARIANT_ID = "trial_1-p50"
"""An id with a LaTeX special character: it must come out escaped (and compile)."""


def _tables(tex: str) -> dict[str, list[list[str]]]:
    """label -> body rows (header dropped) as lists of cells, \\multicolumn unwrapped."""
    out = {}
    for label, body in re.findall(r"\\label\{(tab:\w+)\}.*?\\begin\{tabular\}(.*?)\\end\{tabular\}", tex, re.S):
        body = re.sub(r"\\multicolumn\{\d+\}\{\w\}\{([^}]*)\}", r"\1", body.split("\n", 1)[1].replace("\\hline", ""))
        rows = [[c.strip() for c in r.split("&")] for r in body.split("\\\\") if r.strip()]
        out[label] = rows[1:]
    return out


def _int(cell: str) -> int:
    return int(cell.replace("{,}", ""))


def _sci(cell: str) -> list[float]:
    return [float(m) * 10 ** int(e) for m, e in re.findall(r"\$([\d.]+)\\times 10\^\{(-?\d+)\}\$", cell)]


def _best_trial(study, profile) -> int:
    return int(rank(add_composite(trials_frame(study, profile), profile)).iloc[0]["trial"])


@pytest.fixture(scope="module")
def variants(tiny_study, tmp_path_factory):
    """The variant record of the tiny study with one pruned variant of its best trial."""
    study, cfg, _ = tiny_study
    trial = study.trials[_best_trial(study, get_profile(cfg.profile))]
    url = f"sqlite:///{tmp_path_factory.mktemp('variants') / 'v.db'}"
    record_variant(url, Variant(id=VARIANT_ID, study=study.study_name, trial=trial.number, kind="pruned",
                                params=trial.user_attrs["params"] // 2, bytes=12345, score=0.0714,
                                metrics={"plcc": 0.1, "srcc": 0.05, "krcc": 0.04, "rmse": 1.0}, path="compress/x.pt",
                                ratio=0.5, delta={"score": -0.03}, spec=trial.user_attrs["spec"]))
    return VariantStore(url, study.study_name).frame()


@pytest.fixture(scope="module")
def kit(tiny_study, variants, tmp_path_factory):
    study, cfg, _ = tiny_study
    return write_paper_kit(study, cfg, tmp_path_factory.mktemp("paper-run"), variants=variants)


def test_method_numbers_are_the_study_record(tiny_study, kit, variants):
    study, cfg, _ = tiny_study
    profile = get_profile(cfg.profile)
    tex = (kit / "method.tex").read_text()
    tables = _tables(tex)
    best = _best_trial(study, profile)
    rec = TrialRecord.from_trial(study.trials[best])
    spec = ArchSpec.from_dict(rec.spec)
    assert f"Exported architecture (trial {best})" in tex

    # architecture: per-part parameters against the built model's own parameter tensors
    model = build_model(spec)
    numel = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    expected = [numel(model.stem)] + [numel(s) for s in model.stages] + [numel(model.pools, model.head)]
    arch = tables["tab:arch"]
    assert [r[0] for r in arch] == ["Stem"] + [f"Stage {i}" for i in range(1, len(spec.stages) + 1)] + ["Head", "Total"]
    assert [_int(r[-2]) for r in arch[:-1]] == expected
    assert _int(arch[-1][-2]) == count_params(spec) == sum(expected)
    assert float(arch[-1][-1]) == round(count_flops(spec) / 1e6, 2)
    assert sum(float(r[-1]) for r in arch[:-1]) == pytest.approx(count_flops(spec) / 1e6, abs=0.005 * len(arch))
    for row, stage in zip(arch[1:-2], spec.stages):
        assert [int(row[2]), int(row[3])] == [stage.width, stage.depth]
        assert row[4] == ("--" if stage.block == "attention" else str(stage.kernel))
        assert row[5] == ("--" if stage.block == "residual" else f"{stage.expansion:g}")
    assert f"resized to ${spec.input.resize}\\times{spec.input.resize}$" in tex

    # recipe
    recipe = dict((r[0], r[1]) for r in tables["tab:recipe"])
    t = rec.train_config
    assert _sci(recipe["Optimiser"]) == [pytest.approx(t["lr"], rel=5e-3), pytest.approx(t["weight_decay"], rel=5e-3)]
    assert [int(recipe[k]) for k in ("MOS epochs", "Pretraining epochs", "Batch size", "Seed")] == \
        [t["epochs"], t["pretrain_epochs"], t["batch_size"], t["seed"]]
    assert recipe["EMA decay"] == (f"{t['ema_decay']:g}" if t["ema_decay"] else "none")
    assert recipe["Trained on"] == "the training split of the search"

    # search
    search = dict((r[0], r[1]) for r in tables["tab:search"])
    states = [t.state for t in study.trials]
    stopped = sum(1 for t in study.trials if t.state == TrialState.PRUNED and t.user_attrs.get("stopped_early"))
    counts = [states.count(TrialState.COMPLETE), stopped, states.count(TrialState.PRUNED) - stopped,
              states.count(TrialState.FAIL)]
    assert [int(n) for n in search["Trials"].split("(")[0].split("/")] == counts
    assert search["Budget per trial"] == f"{cfg.trial_budget_s:g} T4 s, at most {cfg.max_epochs} epochs"
    assert _int(search["Parameter cap"]) == profile.caps.params
    span = max(t.datetime_complete for t in study.trials) - min(t.datetime_start for t in study.trials)
    assert search["Wall time"] == f"{span.total_seconds() / 3600:.2f} h"
    front = pareto_front(trials_frame(study, profile))
    assert int(search["Pareto-optimal trials"]) == len(front)

    # validation metrics: the front and the exported trial, each against its own user attributes
    metrics = tables["tab:metrics"]
    assert {int(r[0].split("$")[0]) for r in metrics} == set(front["trial"]) | {best}
    for row in metrics:
        trial = study.trials[int(row[0].split("$")[0])]
        m = trial.user_attrs["metrics"]
        assert _int(row[1]) == trial.user_attrs["params"] and float(row[2]) == round(trial.user_attrs["flops"] / 1e6, 2)
        assert [float(c) for c in row[3:7]] == [round(m[k], 3) for k in ("plcc", "srcc", "krcc", "rmse")]
        assert float(row[7]) == round(trial.values[0], 3)
        assert row[0].endswith("$^\\ast$") == (trial.number == best)

    # compression: the recorded variant, its id escaped
    (v,) = tables["tab:compress"]
    assert v[0] == tex_escape(VARIANT_ID) == "trial\\_1-p50"
    assert [_int(v[3]), _int(v[4]), float(v[5]), float(v[6])] == \
        [variants.iloc[0]["params"], 12345, 0.071, -0.03]


def test_kit_files(kit):
    for stem in ("pareto", "curves"):
        for suffix in (".pdf", ".png"):
            assert (kit / "figures" / f"{stem}{suffix}").stat().st_size > 1000
    assert (kit / "figures" / "pareto.pdf").read_bytes().startswith(b"%PDF")
    bib = (kit / "refs.bib").read_text()
    for key in ("li2024agiqa3k", "akiba2019optuna", "fang2023depgraph", "paszke2019pytorch", "icme2026challenge"):
        assert f"{{{key}," in bib
    assert "agiqa1k" not in bib and "aigiqa20k" not in bib  # the synthetic study used neither
    paper = (kit / "paper.tex").read_text()
    assert "\\input{method}" in paper and "figures/pareto.pdf" in paper and "\\bibliography{refs}" in paper


def test_refs_follow_the_dataset():
    assert "zhang2023agiqa1k" in refs_bib("agiqa1k") and "li2024aigiqa20k" not in refs_bib("agiqa1k")
    assert "li2024aigiqa20k" in refs_bib("aigiqa20k")
    assert refs_bib("agiqa3k").count("@article{li2024agiqa3k,") == 1


def test_export_json_decides_the_model(tiny_study, tmp_path):
    study, cfg, _ = tiny_study
    best = _best_trial(study, get_profile(cfg.profile))
    other = next(t for t in study.trials if t.state == TrialState.COMPLETE and t.number != best)
    recipe = TrialRecord.from_trial(other).recipe
    recipe.train.epochs = 7
    (tmp_path / "export").mkdir()
    export = {"study": study.study_name, "trial": other.number, "recipe": recipe.to_dict(), "teacher": None}
    (tmp_path / "export" / "export.json").write_text(json.dumps(export))
    tex = (write_paper_kit(study, cfg, tmp_path) / "method.tex").read_text()
    recipe_rows = dict((r[0], r[1]) for r in _tables(tex)["tab:recipe"])
    assert f"Exported architecture (trial {other.number})" in tex
    assert recipe_rows["MOS epochs"] == "7" and recipe_rows["Trained on"].startswith("all labelled images")
    assert "No compressed variants were recorded" in tex

    export["trial"] = 99
    (tmp_path / "export" / "export.json").write_text(json.dumps(export))
    with pytest.raises(ValueError, match="trial 99"):
        write_paper_kit(study, cfg, tmp_path)
    export.update(trial=other.number, study="elsewhere")
    (tmp_path / "export" / "export.json").write_text(json.dumps(export))
    with pytest.raises(ValueError, match="'elsewhere'"):
        write_paper_kit(study, cfg, tmp_path)


@pytest.mark.parametrize("ieee", [True, False], ids=["IEEEtran-if-installed", "article"])
def test_paper_compiles(tiny_study, kit, ieee, monkeypatch):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: texlive-latex-base, texlive-latex-extra, texlive-publishers)")
    installed = paper_tex_module._installed
    monkeypatch.setattr(paper_tex_module, "_installed", lambda name: ieee and installed(name))
    (kit / "paper.tex").write_text(paper_tex_module.paper_tex("tiny"))
    assert ("{IEEEtran}" in (kit / "paper.tex").read_text()) == (ieee and installed("IEEEtran.cls"))
    pdf = compile_paper(kit)
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian: poppler-utils): PDF built but its text not checked")
    study, cfg, _ = tiny_study
    spec = ArchSpec.from_dict(study.trials[_best_trial(study, get_profile(cfg.profile))].user_attrs["spec"])
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert f"{count_params(spec):,}" in text
    assert re.search(r"trial.1-p50", text)  # the escaped id typeset (OT1 draws "_" as a rule pdftotext reads as a space)
