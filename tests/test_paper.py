"""The paper kit: every number in method.tex and paper.tex is its source's (the study, the ranking, the
benchmarks' JSON, export.json), the prose holds no internal names, and paper.tex compiles to 4 pages."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

import pytest
from optuna.trial import TrialState

from compress.variants import Variant, VariantStore, record_variant
from results.candidates import ranked_candidates, trials_frame
from results.paper import tex as paper_tex_module
from results.paper import compile_paper, tex_escape, write_paper_kit
from results.paper.ablations import read_ablation
from results.paper.experiments import ranking_table
from results.paper.facts import exported_model
from results.paper.fmt import fixed, plural, tex_int
from results.paper.sections import result_phrase
from search.study.front import pareto_front
from search.profiles import get_profile
from search.study import TrialRecord
from space import ArchSpec, build_model, count_flops, count_params

VARIANT_ID = "trial_1-p50"
"""An id with a LaTeX special character: it must come out escaped (and compile)."""
FIXTURES = Path(__file__).parent / "fixtures"
ABLATIONS = (FIXTURES / "ablation_quality.json", FIXTURES / "ablation_ladder.json")
TITLE, AUTHORS = "A Small Model & Its Search", ["Ada Lovelace", "Alan Turing"]


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


def _ranked(study, cfg, variants=None) -> pd.DataFrame:
    return ranked_candidates(study, get_profile(cfg.profile), variants)


def _best_trial(study, cfg, variants=None) -> int:
    """The trial of the candidate the ranking marks for export."""
    ranked = _ranked(study, cfg, variants)
    return int(ranked.loc[ranked["export"], "trial"].iloc[0])


def _prose(tex: str) -> str:
    """The text outside comments, labels, refs, cites and file names (where internal names may stand)."""
    tex = re.sub(r"(?m)(?<!\\)%.*$", "", tex)
    return re.sub(r"\\(label|ref|cite|input|includegraphics|bibliography\w*)(\[[^]]*\])?\{[^}]*\}", "", tex)


@pytest.fixture(scope="module")
def variants(tiny_study, tmp_path_factory):
    """The variant record of the tiny study with one pruned variant of its best trial."""
    study, cfg, _ = tiny_study
    trial = study.trials[_best_trial(study, cfg)]
    url = f"sqlite:///{tmp_path_factory.mktemp('variants') / 'v.db'}"
    record_variant(url, Variant(id=VARIANT_ID, study=study.study_name, trial=trial.number, kind="pruned",
                                params=trial.user_attrs["params"] // 2, bytes=12345, score=0.0714,
                                metrics={"plcc": 0.1, "srcc": 0.05, "krcc": 0.04, "rmse": 1.0}, path="compress/x.pt",
                                ratio=0.5, delta={"score": -0.03}, spec=TrialRecord.from_trial(trial).spec))
    return VariantStore(url, study.study_name).frame()


@pytest.fixture(scope="module")
def kit(tiny_study, variants, tmp_path_factory):
    study, cfg, _ = tiny_study
    return write_paper_kit(study, cfg, tmp_path_factory.mktemp("paper-run"), variants=variants, ablations=ABLATIONS,
                           title=TITLE, authors=AUTHORS)


def test_method_numbers_are_the_study_record(tiny_study, kit, variants):
    study, cfg, _ = tiny_study
    profile = get_profile(cfg.profile)
    tex = (kit / "method.tex").read_text()
    tables = _tables(tex)
    best = _best_trial(study, cfg, variants)
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
    t = rec.recipe["train"]
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
    assert f"{plural(len(front), 'trial')} {'is' if len(front) == 1 else 'are'} Pareto-optimal" in tex

    # validation metrics: the front and the exported trial, each against its own user attributes
    metrics = tables["tab:metrics"]
    assert {int(r[0].split("$")[0]) for r in metrics} == set(front["trial"]) | {best}  # one front for all tables
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
    paper, method = (kit / "paper.tex").read_text(), (kit / "method.tex").read_text()
    assert "\\input{method}" in paper and "figures/pareto.pdf" in method and "\\bibliography{refs}" in paper
    assert f"\\title{{{tex_escape(TITLE)}}}" in paper and all(name in paper for name in AUTHORS)


def test_every_citation_has_one_checked_entry(kit):
    bib = (kit / "refs.bib").read_text()
    entries = re.findall(r"@\w+\{(\w+),", bib)
    assert len(entries) == len(set(entries))
    tex = (kit / "paper.tex").read_text() + (kit / "method.tex").read_text()
    cited = {k.strip() for group in re.findall(r"\\cite\{([^}]*)\}", tex) for k in group.split(",")}
    assert cited == set(entries)  # nothing cited is missing, nothing listed goes uncited
    assert "volume  = {34}" in bib.split("@article{li2024agiqa3k,")[1].split("}\n\n")[0]
    assert "https://sites.google.com/view/icme26-aigciqa-gc/home" in bib


def test_prose_has_readable_names(kit):
    for name in ("paper.tex", "method.tex"):
        prose = _prose((kit / name).read_text())
        for internal in ("corr_score", "corr\\_score", "icme2026-aigc", "(s)", "-0.000", "score_name", "nan"):
            assert internal not in prose, (name, internal)
    assert "validation correlation score" in (kit / "paper.tex").read_text()


def test_abstract_and_conclusion_numbers(tiny_study, kit, variants):
    study, cfg, _ = tiny_study
    paper = (kit / "paper.tex").read_text()
    row = _ranked(study, cfg, variants).query("export").iloc[0]
    completed = sum(t.state == TrialState.COMPLETE for t in study.trials)
    summary = paper.split("\\begin{abstract}")[1].split("\\end{abstract}")[0]
    assert f"{plural(completed, 'trial')} completed" in summary
    params = re.search(r"has ([\d{,}]+) parameters and ([\d.]+) MFLOPs", summary)
    assert [_int(params[1]), float(params[2])] == [row["params"], round(row["flops"] / 1e6, 2)]
    assert f"validation correlation score of {fixed(row['score'])}" in summary
    conclusion = paper.split("\\section{Conclusion}")[1]
    assert f"a model of {tex_int(row['params'])} parameters" in conclusion
    assert "\\begin{IEEEkeywords}" in paper or "Index Terms" in paper


def test_ranking_shows_the_confirmed_scores(tiny_study, variants):
    study, cfg, _ = tiny_study
    profile = get_profile(cfg.profile)
    ranked = _ranked(study, cfg, variants)
    exp = exported_model(study, Path("/nonexistent"), ranked, variants)
    plain = _tables(ranking_table(ranked, exp, profile))["tab:ranking"]
    assert [r[1].removesuffix("$^\\ast$") for r in plain] == \
        [f"Trial {i.split()[1]}" if i.startswith("trial ") else tex_escape(i) for i in ranked["id"].head(5)]
    assert [float(r[4]) for r in plain] == [round(x, 3) for x in ranked["score"].head(5)]
    assert [_int(r[2]) for r in plain] == list(ranked["params"].head(5))
    assert [len(r) for r in plain] == [5] * len(plain)  # no "Confirmed" column when nothing was confirmed

    confirmed = ranked.assign(confirm_mean=np.nan, confirm_sd=np.nan, confirm_n=np.nan, confirm_protocol=None,
                              finalist=False)
    confirmed.loc[0, ["confirm_mean", "confirm_sd", "confirm_n", "confirm_protocol", "finalist"]] = \
        [0.4567, 0.0123, 3, "folds", True]
    confirmed.loc[1, ["confirm_mean", "confirm_sd", "confirm_n", "confirm_protocol"]] = [0.9, 0.0, 1, "folds"]
    table_tex = ranking_table(confirmed, exp, profile)
    rows = _tables(table_tex)["tab:ranking"]
    assert rows[0][5] == "0.457 $\\pm$ 0.012 (3 prompt-grouped folds)"
    assert all(r[5] == "--" for r in rows[1:])  # a part-way confirm (row 2) is not shown as confirmed
    assert "3 runs each, retrained from scratch on prompt-grouped folds" in table_tex
    confirmed["confirm_protocol"] = "seeds"
    table_tex = ranking_table(confirmed, exp, profile)
    assert _tables(table_tex)["tab:ranking"][0][5] == "0.457 $\\pm$ 0.012 (3 seeds)"
    assert "with other seeds on the study's own split" in table_tex
    assert result_phrase(confirmed.iloc[0], profile).endswith("(0.457 $\\pm$ 0.012 over 3 seeds)")


def test_ablations_are_the_benchmarks_numbers(kit):
    tables = _tables((kit / "method.tex").read_text())
    for i, path in enumerate(ABLATIONS, 1):
        runs = json.loads(path.read_text())
        by_name = {}
        for r in runs:
            by_name.setdefault(r["recipe"], {})[r["fold"]] = r["corr_score"]
        rows = tables[f"tab:ablation{i}"]
        assert {r[0] for r in rows} == {tex_escape(n) for n in by_name}
        reference = rows[0][0]
        assert rows[0][4] == "reference"
        for row in rows:
            scores = by_name[next(n for n in by_name if tex_escape(n) == row[0])]
            mean, sd = (float(x) for x in row[3].split(" $\\pm$ "))
            values = np.array(list(scores.values()))
            assert [_int(row[2]), mean, sd] == [len(values), round(values.mean(), 3), round(values.std(ddof=1), 3)]
            if row[0] != reference:
                base = by_name[next(n for n in by_name if tex_escape(n) == reference)]
                gains = np.array([scores[f] - base[f] for f in scores])
                gain, gain_sd = (float(x) for x in row[4].split(" $\\pm$ "))
                assert [gain, gain_sd] == [round(gains.mean(), 3), round(gains.std(ddof=1), 3)]
                assert row[5] == f"{(gains > 0).sum()}/{len(gains)}"
        gains = [float(r[4].split(" ")[0]) for r in rows[1:]]
        assert gains == sorted(gains, reverse=True)
    assert rows[0][0].startswith("search blocks, 160 px whole image") and "seed" not in rows[0][0]
    method = (kit / "method.tex").read_text()
    assert "each run trained for 2 epochs" in method and "each run trained for 420 CPU seconds (one thread)" in method


def test_ablation_files_are_checked(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"recipe": "x"}]))
    with pytest.raises(ValueError, match="bad.json is not the --out JSON"):
        read_ablation(bad)
    with pytest.raises(ValueError, match="cannot read ablation file"):
        read_ablation(tmp_path / "missing.json")
    runs = json.loads(ABLATIONS[0].read_text())
    (tmp_path / "noref.json").write_text(json.dumps([r for r in runs if r["recipe"] != "plain CNN"]))
    with pytest.raises(ValueError, match="no reference row"):
        read_ablation(tmp_path / "noref.json")


def test_fixed_never_writes_negative_zero():
    assert [fixed(-0.0004), fixed(0.0004, sign=True), fixed(-0.0123, sign=True), fixed(0.5, sign=True)] == \
        ["0.000", "0.000", "-0.012", "+0.500"]
    assert [plural(1, "stage"), plural(3, "stage"), plural(1.5, "epoch")] == ["1 stage", "3 stages", "1.5 epochs"]


def test_export_json_decides_the_model(tiny_study, tmp_path):
    study, cfg, _ = tiny_study
    best = _best_trial(study, cfg)
    other = next(t for t in study.trials if t.state == TrialState.COMPLETE and t.number != best)
    recipe = TrialRecord.from_trial(other).trained()
    recipe.train.epochs = 7
    (tmp_path / "export").mkdir()
    export = {"study": study.study_name, "candidate": f"trial {other.number}", "trial": other.number,
              "recipe": recipe.to_dict(), "teacher": None, "images": 1234, "planned_epochs": 7, "pretrain_epochs": 1,
              "estimated_t4_s": 1530.0, "measured_retrain_s": 95.0, "device": "cpu",
              "trained": {"epochs_run": 5, "seconds": 90.0, "stop": "no validation gain for 2 epochs", "best_epoch": 3,
                          "curve": [[1, 0.5], [3, 0.7], [5, 0.6]], "final": "holdout"}}
    (tmp_path / "export" / "export.json").write_text(json.dumps(export))
    tex = (write_paper_kit(study, cfg, tmp_path) / "method.tex").read_text()
    recipe_rows = dict((r[0], r[1]) for r in _tables(tex)["tab:recipe"])
    assert f"Exported architecture (trial {other.number})" in tex
    assert recipe_rows["MOS epochs"] == "7" and recipe_rows["Trained on"].startswith("all labelled images")
    assert "No compressed variants were recorded" in tex
    assert "on the 1{,}234 labelled images, planned at 7 epochs, the first 1 epoch self-supervised" in tex
    assert "estimates 25.5 min" in tex and "own retrain trained 5 epochs in 1.6 min and stopped because no " in tex
    assert "best validated snapshot (epoch 3)" in tex and "keeping the best snapshot" in tex  # what ran, not the plan
    ranking = _tables(tex)["tab:ranking"]
    assert [r[1] for r in ranking if r[1].endswith("$^\\ast$")] == [f"Trial {other.number}$^\\ast$"]

    export["trial"] = 99
    (tmp_path / "export" / "export.json").write_text(json.dumps(export))
    with pytest.raises(ValueError, match="trial 99"):
        write_paper_kit(study, cfg, tmp_path)
    export.update(trial=other.number, study="elsewhere")
    (tmp_path / "export" / "export.json").write_text(json.dumps(export))
    with pytest.raises(ValueError, match="'elsewhere'"):
        write_paper_kit(study, cfg, tmp_path)


@pytest.mark.parametrize("ieee", [True, False], ids=["IEEEtran-if-installed", "article"])
def test_paper_compiles(tiny_study, kit, variants, ieee, monkeypatch):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: texlive-latex-base, texlive-latex-extra, texlive-publishers)")
    installed = paper_tex_module._installed
    monkeypatch.setattr(paper_tex_module, "_installed", lambda name: ieee and installed(name))
    study, cfg, _ = tiny_study
    ranked = _ranked(study, cfg, variants)
    exp = exported_model(study, kit.parent, ranked, variants)
    (kit / "paper.tex").write_text(paper_tex_module.paper_tex(cfg, exp, ranked, 3, True, TITLE, AUTHORS))
    assert ("{IEEEtran}" in (kit / "paper.tex").read_text()) == (ieee and installed("IEEEtran.cls"))
    pdf = compile_paper(kit)
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian: poppler-utils): PDF built but its text not checked")
    spec = ArchSpec.from_dict(TrialRecord.from_trial(study.trials[_best_trial(study, cfg, variants)]).spec)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert f"{count_params(spec):,}" in text
    # the escaped id typeset (OT1 draws "_" as a rule pdftotext reads as a space)
    assert re.search(r"trial.1-p50", text)
    assert "[TODO:" in text and "??" not in text  # the team's marks shown; every reference and citation resolved
    if ieee and installed("IEEEtran.cls") and shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert re.search(r"Pages:\s+(\d+)", info)[1] == "4"  # the challenge's 4 pages
