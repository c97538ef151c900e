"""The experiments section's study-specific parts: the ranking export takes from, the final retrain and
the comparison with published systems."""
from __future__ import annotations

import pandas as pd

from results.candidates import Protocol
from results.paper.bib import dataset_title
from results.paper.facts import Exported, exported_row
from results.paper.fmt import WRAPPED, fixed, mflops, plural, score_words, table, tex_escape, tex_int, todo
from search.profiles import Profile
from search.study import StudyConfig
from search.train.retrain import FILL, FINALS

RANKING_ROWS = 5
"""Candidates the ranking table shows (the exported one is added when it ranks lower)."""
PUBLISHED = (  # (system, BibTeX key, parameters, score, evaluated on) as their papers publish them
    ("FineQA", "fineqa2026", "211K", "0.7421", "their 610-image test split"),
    ("AGIQA-3K baselines", "li2024agiqa3k", todo("params"), todo("SRCC/PLCC"), "their split of AGIQA-3K"),
)


def candidate_name(candidate: str) -> str:
    """A ranking id as the paper writes it: "trial 3" -> "Trial 3", a variant id escaped."""
    return candidate.replace("trial ", "Trial ", 1) if candidate.startswith("trial ") else tex_escape(candidate)


def confirmed_parts(row: pd.Series) -> tuple[str, str] | None:
    """("mean $\\pm$ sd", "3 prompt-grouped folds") of a finalist, or None for a row ranked by its single run
    (a part-way confirm counts for nothing)."""
    if not row.get("finalist", False):
        return None
    run = Protocol.RUN_NOUN[row.get("confirm_protocol") or "folds"]
    return f"{fixed(row['confirm_mean'])} $\\pm$ {fixed(row['confirm_sd'])}", plural(int(row["confirm_n"]), run)


def confirmed(row: pd.Series) -> str | None:
    """"mean $\\pm$ sd (3 prompt-grouped folds)" of a finalist, or None (`confirmed_parts`)."""
    parts = confirmed_parts(row)
    return None if parts is None else f"{parts[0]} ({parts[1]})"


def finalists_words(finalists: pd.DataFrame) -> str:
    """How the finalists' runs were made, for a caption ("3 runs each, retrained from scratch on ...")."""
    first = finalists.iloc[0]
    return (f"{plural(int(first['confirm_n']), 'run')} each, "
            f"{Protocol.HOW[first.get('confirm_protocol') or 'folds']}")


def ranking_table(ranked: pd.DataFrame, exp: Exported, profile: Profile) -> str:
    """The first candidates of the ranking export takes from, with their confirmed scores when confirmed."""
    shown = ranked.head(RANKING_ROWS)
    mine = ranked[ranked["id"] == exp.candidate]
    if len(mine) and mine.index[0] not in shown.index:
        shown = pd.concat([shown, mine])
    finalists = ranked[ranked["finalist"]] if "finalist" in ranked else ranked.iloc[:0]
    has_confirm = len(finalists) > 0
    rows = []
    for rank, r in shown.iterrows():
        mark = "$^\\ast$" if r["id"] == exp.candidate else ""
        cells = [str(rank + 1), candidate_name(r["id"]) + mark, tex_int(r["params"]),
                 mflops(r["flops"]) if pd.notna(r["flops"]) else "--",
                 fixed(r["score"])]
        cells += [confirmed(r) or "--"] if has_confirm else []
        rows.append(" & ".join(cells) + " \\\\")
    caption = (f"The ranking the export takes from ($^\\ast$: the exported candidate): validation "
               f"{score_words(profile)} "
               "of the search" + (f" and, for the finalists, mean $\\pm$ sd of {finalists_words(finalists)}"
                                  if has_confirm else "; no candidate was confirmed by repeated runs") + ".")
    return table("tab:ranking", caption, "rlrrr" + ("r" if has_confirm else ""),
                 "Rank & Candidate & Params & MFLOPs & Score" + (" & Confirmed" if has_confirm else ""), rows)


def retrain_text(exp: Exported, profile: Profile) -> str:
    """The final retrain and its time from `export/export.json`, or what is still to run."""
    notebook = todo(f"the notebook's measured wall time on a Kaggle T4 (limit {profile.notebook_limit_s / 3600:g} h)")
    if exp.export is None:
        return (todo("run the export: the final retrain on all labelled images and its T4 time go here") +
                f" {notebook}.")
    e = exp.export
    pretrain = (f", the first {plural(e['pretrain_epochs'], 'epoch')} self-supervised" if e.get("pretrain_epochs")
                else "")
    schedule = e.get("schedule") or {}
    why = (" Its validation score was still rising at the end of its trial, so the notebook trains until its "
           "deadline (the epochs the T4's measured pace fits)." if schedule.get("epochs") == FILL else "")
    planned = e.get("planned_epochs", e.get("epochs"))
    trained = e.get("trained") or {}
    members = trained.get("member_epochs") or []
    ensemble = (f" The submission is an ensemble: {len(members)} networks of this architecture trained apart, each "
                f"with its own seed, their scores averaged ({tex_int(e['params'])} parameters in all, counted against "
                "the cap and the size tier)." if len(members) > 1 else "")
    epochs_run = (" + ".join(map(str, members)) + " epochs (one term per network)" if len(members) > 1
                  else plural(trained.get("epochs_run", 0), "epoch"))
    ran = (f" On the development machine ({tex_escape(e['device'])}) export's own retrain trained "
           f"{epochs_run} in {e['measured_retrain_s'] / 60:.1f} min and stopped because "
           f"{tex_escape(trained['stop'])}"
           + (f", ending on its best validated snapshot (epoch {trained['best_epoch']})"
              if trained.get("best_epoch") else "") + "."
           if trained else f" It took {e['measured_retrain_s'] / 60:.1f} min on the development machine "
                           f"({tex_escape(e['device'])}).")
    final = FINALS.get(trained.get("final", ""), "")
    how = f" The scored training uses {tex_escape(final)}." if final else ""
    return (f"For the submission the exported model is retrained from scratch on the "
            f"{tex_int(e['images'])} labelled images, planned at {plural(planned, 'epoch')}{pretrain}."
            f"{why}{how}{ensemble} "
            f"The budget model estimates {e['estimated_t4_s'] / 60:.1f} min for this retrain and the inference on a "
            f"T4.{ran} {notebook}. {todo('the test-set result from the organisers')}.")


def comparison_table(ranked: pd.DataFrame, exp: Exported, cfg: StudyConfig, profile: Profile) -> str:
    """This work's validation score beside published systems' numbers (other splits: not comparable)."""
    mine = exported_row(ranked, exp)
    name, key = dataset_title(cfg.dataset)  # uncited: a description, too long
    split = f"our validation split ({cfg.val_fraction:.0%} of the prompts{f' of {name}' if key else ''})"
    split = split.replace("%", r"\%")
    rows = [f"This work ({candidate_name(exp.candidate)}) & {tex_int(mine['params'])} & {fixed(mine['score'])} & "
            f"{split} \\\\"]
    rows += [f"{system}~\\cite{{{cite}}} & {params} & {score} & {where} \\\\"
             for system, cite, params, score, where in PUBLISHED]
    caption = (f"Published systems beside this work (score: the {score_words(profile)} unless marked). Published "
               "numbers come from other splits and training data: context, not a comparison on equal terms.")
    return table("tab:published", caption, f"{WRAPPED}rr{WRAPPED}",
                 "System & Params & Score & Evaluated on", rows)
