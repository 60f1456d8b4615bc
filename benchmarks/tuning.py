"""
The choices made on tuning seeds, and whether they held: ``report robustness`` and ``report carry-over``.

``python -m benchmarks report robustness``: the robustness work on the held-out grid's misses, each candidate against
the entry on the TUNING seeds. Where a target is missed on the evaluation seeds (``report evaluation``), candidate
configurations are run afresh with the entry itself on the tuning seeds 0-4 (``python -m benchmarks run --seeds 0 1 2
3 4 --out benchmarks/robustness``, see docs/guide/reproducing.md). This reads those records (tuning seeds only; it
refuses evaluation seeds and stale records) and writes, per task, the entry (ours with the RL Zoo's settings or its
``# Tuned`` entry, as ``benchmarks.entries`` labels it) and each candidate (labeled by what it changes from the
Zoo's values): n, the seeds, IQM with its stratified-bootstrap 95% CI and mean +/- std of the final returns, the
coefficient of variation, the probability that a run of the candidate beats a run of the entry with its 95% CI
(rliable), and the verdict:

- ``chosen``: at least ``MIN_SEEDS`` seeds, the entry's seeds exactly, an IQM above the entry's, P(candidate >
  entry) > 0.5, and no run far below the entry's worst (the worst-run guard: the candidate's lowest final return at
  least the entry's lowest less ``WORST_RUN_MARGIN`` times the entry's IQM); of several, the one with the highest IQM.
  A chosen candidate then runs once on the evaluation seeds;
- ``not chosen``: judged on those seeds and not better; ``not chosen, a run far below the entry's worst`` where only
  the worst-run guard fails it;
- ``pending``: fewer than ``MIN_SEEDS`` seeds of it or of the entry, or not the entry's seeds.

Once a chosen candidate has replaced the entry in ``zoo_configs/trpo.yml`` (the former entry kept in
``benchmarks/configs/former_entries.yml``), the table shows the former entry (``former entry``), the candidate that
replaced it (``(ours, tuned)``, its P and verdict against the former entry: ``chosen, now the entry``), and judges
every other candidate against the new entry: to replace the entry, a candidate has to beat the one in place. Where
the entry has been replaced twice or more (the n-th former entry in ``benchmarks/configs/former_entries_<n>.yml``),
each former entry after the first keeps its verdict against the one it replaced (``chosen, a former entry``), and the
entry its verdict against the latest former one.

The worst-run guard was added to the rule on 2026-12-05, before the candidates judged after it had run on all their
tuning seeds; the verdicts that replaced an entry before then (the rows of the former entries and of the entries
that replaced them) were reached without it and are shown as they were reached.

``python -m benchmarks report carry-over`` audits the rule: each replacement of an entry predicts that the candidate
does better on seeds it has never seen, and every entry, former ones included, has since run on the evaluation seeds.
It lists each replacement's tuning-seed evidence (both IQMs, P(new > old) with its 95% CI) beside the evaluation seeds'
(pending until the new entry has run on all the old one's) and counts how many carried over (P > 0.5 there), apart
for the replacements whose tuning P had its whole CI above 0.5. It chooses nothing. Audited on 2026-12-06 (nine of
thirteen carried over, the losses mostly small), the rule was kept rather than asking for P's whole 95% CI above 0.5,
which would have kept out six of those nine (docs/results/archive.md).

::

    python -m benchmarks report robustness --results benchmarks/robustness --docs docs/results/archive.md
    python -m benchmarks report carry-over --docs docs/results/archive.md
"""

import argparse
import sys
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT, entries
from benchmarks.docs import publish
from benchmarks.fingerprint import refuse_to_report
from benchmarks.records import load_runs, score_at
from benchmarks.stats import interquartile_mean, iqm_and_mean, poi_with_ci, probability_of_improvement, with_ci

#: the fewest tuning seeds on which a candidate is judged (the held-out protocol: at least five per candidate)
MIN_SEEDS = 5
#: the worst-run guard: a candidate whose worst run ends more than this share of the entry's IQM below the entry's
#: worst run is not chosen, however high its IQM (a run that never learns the task is what the CV target forbids)
WORST_RUN_MARGIN = 0.1
ROBUSTNESS_MARKERS = ("<!-- robustness-results:start -->", "<!-- robustness-results:end -->")
CARRY_OVER_MARKERS = ("<!-- carry-over:start -->", "<!-- carry-over:end -->")


def tuning_records(results: str) -> dict[str, list[dict[str, Any]]]:
    """
    :param results: a results folder of ``python -m benchmarks run``
    :return: the tuning-seed runs of ours on each task (the last line of a run present twice)
    """
    runs = load_runs(results, "tuning")
    return {env_id: [run for run in env_runs if run["algo"] == "sb3_trpo"] for env_id, env_runs in runs.items()}


def final_returns(runs: list[dict[str, Any]]) -> dict[int, float]:
    """:return: seed -> the final model's mean return"""
    return {run["seed"]: float(run["final_eval"]["mean"]) for run in runs}


def verdicts(entry: dict[int, float], candidates: dict[str, dict[int, float]], worst_run_guard: bool = True) -> dict[str, str]:
    """
    :param entry: the entry's final return per seed
    :param candidates: each candidate's final return per seed
    :param worst_run_guard: apply the worst-run guard (False for the verdicts reached before it was part of the rule)
    :return: each candidate's verdict (``chosen``, ``not chosen``, ``not chosen, a run far below the entry's worst``,
        ``pending``; the rule of the module's docstring)
    """
    judged: dict[str, float] = {}
    result = {}
    for label, scores in candidates.items():
        if len(entry) < MIN_SEEDS or len(scores) < MIN_SEEDS or set(scores) != set(entry):
            result[label] = "pending"
            continue
        candidate_scores, entry_scores = _column(scores), _column(entry)
        iqm = iqm_and_mean(candidate_scores)["iqm"]
        entry_iqm = iqm_and_mean(entry_scores)["iqm"]
        poi = probability_of_improvement(candidate_scores, entry_scores)["poi"]
        result[label] = "not chosen"
        if iqm > entry_iqm and poi > 0.5:
            if worst_run_guard and candidate_scores.min() < worst_run_floor(entry_scores[:, 0], entry_iqm):
                result[label] = "not chosen, a run far below the entry's worst"
            else:
                judged[label] = iqm
    if judged:
        result[max(judged, key=judged.__getitem__)] = "chosen"
    return result


def worst_run_floor(entry_returns: np.ndarray, entry_iqm: float) -> float:
    """
    :param entry_returns: the entry's final returns
    :param entry_iqm: their IQM
    :return: the lowest final return a chosen candidate's runs may end at (the worst-run guard)
    """
    return float(entry_returns.min() - WORST_RUN_MARGIN * abs(entry_iqm))


def _column(scores: dict[int, float]) -> np.ndarray:
    return np.array([[scores[seed]] for seed in sorted(scores)], dtype=np.float64)


def robustness_table(records: dict[str, list[dict[str, Any]]]) -> str:
    """
    :param records: the tuning-seed runs of ours per task (:func:`tuning_records`)
    :return: the Markdown table, per task with an entry and at least one candidate, or a former entry; empty when
        no task has either
    """
    lines = []
    for env_id in sorted(records):
        variants = entries.by_variant(records[env_id])
        generations = {
            label: generation
            for label, runs in variants.items()
            if (generation := entries.former_generation(runs[0])) is not None
        }
        former = sorted(generations, key=generations.__getitem__)
        current = [label for label, runs in variants.items() if entries.is_headline(runs[0]) and label not in former]
        if len(current) > 1 or not (former or current):
            continue
        scores = {label: final_returns(runs) for label, runs in variants.items()}
        entry = current[0] if current else None
        # Each row's baseline (None: none) and verdict. The former entries in the order they were in place: each
        # later one (and then the entry) against the one it replaced
        rows: dict[str, tuple[str | None, str]] = {}
        for previous, label in zip([None, *former], former, strict=False):
            if previous is None:
                rows[label] = (None, "former entry")
            else:
                replaced = verdicts(scores[previous], {label: scores[label]}, worst_run_guard=False)[label]
                rows[label] = (previous, f"{replaced}, a former entry")
        if former:
            if entry is not None:
                replaced = verdicts(scores[former[-1]], {entry: scores[entry]}, worst_run_guard=False)[entry]
                rows[entry] = (former[-1], f"{replaced}, now the entry")
        elif entry is not None:
            rows[entry] = (None, "entry")
        candidates = {label: value for label, value in scores.items() if label not in rows}
        if not candidates and not former:
            continue
        judged = verdicts(scores[entry] if entry is not None else {}, candidates)
        rows.update({label: (entry, judged[label]) for label in candidates})
        for label, (against, verdict) in rows.items():
            column = _column(scores[label])
            values = column[:, 0]
            poi = "-"
            if against is not None and set(scores[label]) == set(scores[against]) and len(values) >= 2:
                estimate = probability_of_improvement(column, _column(scores[against]))
                poi = poi_with_ci(estimate)
            seeds = ",".join(str(seed) for seed in sorted(scores[label]))
            iqm = with_ci(iqm_and_mean(column), "iqm", 1) if len(values) > 1 else "-"
            spread = f"{values.mean():.1f} +/- {values.std():.1f}"
            cv = f"{values.std() / abs(values.mean()):.3f}" if values.mean() else "-"
            lines.append(f"| {env_id} | {label} | {len(values)} | {seeds} | {iqm} | {spread} | {cv} | {poi} | {verdict} |")
    if not lines:
        return ""
    header = (
        "| task | configuration | n | tuning seeds | IQM [95% CI] | mean +/- std | CV | P(candidate > entry) [95% CI]"
        " | verdict |\n|---|---|---:|---|---|---|---:|---|---|\n"
    )
    return header + "\n".join(lines) + "\n"


def generation(record: dict[str, Any]) -> int | None:
    """
    :return: which entry of its task it ran: the former entries 0, 1, ... oldest first, then the current entry (one
        past the last former one); None for any other configuration
    """
    former = entries.former_generation(record)
    if former is not None:
        return former
    if entries.is_tuned(record):
        return len(entries.former_entries().get(record["env"], []))
    return None


def judged_scores(runs: list[dict[str, Any]]) -> dict[int, dict[int, float]]:
    """
    :param runs: one task's runs of ours
    :return: entry generation -> seed -> the return where the task is judged (runs without one there are left out)
    """
    scores: dict[int, dict[int, float]] = {}
    for run in runs:
        if run["algo"] == "sb3_trpo" and (which := generation(run)) is not None:
            score = score_at(run, entries.JUDGED_AT.get(run["env"]))
            if score is not None:
                scores.setdefault(which, {})[run["seed"]] = score
    return scores


def change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """
    :return: what the new entry changes from the old one, ``name old -> new`` for each hyperparameter (``default``:
        not set by the entry, the algorithm's default)
    """
    names = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return "; ".join(f"{name} {old.get(name, 'default')} -> {new.get(name, 'default')}" for name in names)


def _compare(old: dict[int, float], new: dict[int, float]) -> tuple[str, str, dict[str, float] | None]:
    # both IQMs ("old -> new") and P(new > old) with its CI, or dashes where either has fewer than 2 runs
    if len(old) < 2 or len(new) < 2:
        return "-", "-", None
    # the IQMs' point estimates (iqm_and_mean's, without their bootstrap)
    old_scores, new_scores = _column(old), _column(new)
    poi = probability_of_improvement(new_scores, old_scores)
    return f"{interquartile_mean(old_scores):.1f} -> {interquartile_mean(new_scores):.1f}", poi_with_ci(poi), poi


def replacements(tuning: dict[str, list[dict[str, Any]]], evaluation: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """
    :param tuning: each task's tuning-seed runs
    :param evaluation: each task's evaluation-seed runs
    :return: one row per replacement of an entry (a task with former entries), oldest first: ``task``, ``change``,
        the tuning and evaluation comparisons (``tuning_iqm``, ``tuning_poi`` text and ``tuning_estimate``, likewise
        ``evaluation_*``, with ``tuning_n`` and ``evaluation_n`` the runs of the new entry, and ``evaluation_missing``
        the number of the old entry's evaluation seeds the new one has not run on yet)
    """
    rows = []
    for env_id in sorted(set(tuning) | set(evaluation)):
        former = entries.former_entries().get(env_id, [])
        current = entries.tuned_entries().get(env_id)
        if not former or current is None:
            continue
        chain = [*former, current]
        on_tuning, on_evaluation = judged_scores(tuning.get(env_id, [])), judged_scores(evaluation.get(env_id, []))
        for old in range(len(chain) - 1):
            new = old + 1
            tuning_iqm, tuning_poi, tuning_estimate = _compare(on_tuning.get(old, {}), on_tuning.get(new, {}))
            evaluation_iqm, evaluation_poi, evaluation_estimate = _compare(
                on_evaluation.get(old, {}), on_evaluation.get(new, {})
            )
            rows.append(
                {
                    "task": env_id,
                    "change": change(chain[old], chain[new]),
                    "tuning_n": len(on_tuning.get(new, {})),
                    "tuning_iqm": tuning_iqm,
                    "tuning_poi": tuning_poi,
                    "tuning_estimate": tuning_estimate,
                    "evaluation_n": len(on_evaluation.get(new, {})),
                    "evaluation_missing": len(set(on_evaluation.get(old, {})) - set(on_evaluation.get(new, {}))),
                    "evaluation_iqm": evaluation_iqm,
                    "evaluation_poi": evaluation_poi,
                    "evaluation_estimate": evaluation_estimate,
                }
            )
    return rows


def pending(row: dict[str, Any]) -> bool:
    """:return: whether the new entry has run on some, not yet all, of the evaluation seeds the old one ran on"""
    return row["evaluation_estimate"] is not None and row["evaluation_missing"] > 0


def carried_over(row: dict[str, Any]) -> bool | None:
    """
    :return: whether the new entry beat the old one on the evaluation seeds (P > 0.5); None where not both ran there,
        or while it is :func:`pending`
    """
    estimate = row["evaluation_estimate"]
    return None if estimate is None or pending(row) else estimate["poi"] > 0.5


def clear_on_tuning(row: dict[str, Any]) -> bool | None:
    """:return: whether the tuning seeds' P(new > old) had its whole 95% CI above 0.5; None where not judged there"""
    estimate = row["tuning_estimate"]
    return None if estimate is None else estimate["low"] > 0.5


def carry_over_table(rows: list[dict[str, Any]]) -> str:
    """
    :param rows: :func:`replacements`
    :return: the Markdown table and the counts under it; empty when there is no replacement
    """
    if not rows:
        return ""
    lines = [
        "| task | what the new entry changes | tuning n | tuning IQM old -> new | tuning P(new > old) [95% CI] "
        "| evaluation n | evaluation IQM old -> new | evaluation P(new > old) [95% CI] | carried over |",
        "|---|---|---:|---|---|---:|---|---|---|",
    ]
    for row in rows:
        verdict = {True: "yes", False: "no", None: "-"}[carried_over(row)]
        if pending(row):
            verdict = f"pending ({row['evaluation_n']} of {row['evaluation_n'] + row['evaluation_missing']})"
        lines.append(
            f"| {row['task']} | {row['change']} | {row['tuning_n']} | {row['tuning_iqm']} | {row['tuning_poi']}"
            f" | {row['evaluation_n']} | {row['evaluation_iqm']} | {row['evaluation_poi']} | {verdict} |"
        )
    counts = []
    for clear, description in ((True, "whole 95% CI above 0.5"), (False, "95% CI reaching 0.5 or below")):
        checked = [row for row in rows if clear_on_tuning(row) is clear and carried_over(row) is not None]
        kept = sum(bool(carried_over(row)) for row in checked)
        counts.append(f"{kept} of {len(checked)} with the tuning seeds' P(new > old) {description}")
    waiting = sum(pending(row) for row in rows)
    unchecked = sum((carried_over(row) is None or clear_on_tuning(row) is None) and not pending(row) for row in rows)
    summary = f"Carried over (P(new > old) > 0.5 on the evaluation seeds): {counts[0]}; {counts[1]}"
    summary += f"; {unchecked} not run on both seed sets" if unchecked else ""
    summary += f"; {waiting} pending (the new entry not yet on all the old one's evaluation seeds)" if waiting else ""
    summary += "."
    return "\n".join(lines) + "\n\n" + summary + "\n"


def add_robustness_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``report robustness``."""
    parser.add_argument("--results", default=str(REPO_ROOT / "benchmarks" / "robustness"))
    parser.add_argument(
        "--docs", default=None, help=f"also write the table into this Markdown page, between {ROBUSTNESS_MARKERS[0]}"
    )
    parser.add_argument("--allow-mixed", action="store_true", help="report stale records too")


def robustness_main(args: argparse.Namespace) -> int:
    """The robustness work on the held-out grid's misses: each candidate against the entry on the TUNING seeds."""
    runs = load_runs(args.results)
    flat = [run for env_runs in runs.values() for run in env_runs]
    if any(run.get("seed_role") != "tuning" for run in flat):
        print(f"{args.results} holds runs that are not on tuning seeds: the robustness work never reads them", file=sys.stderr)
        return 2
    if not flat:
        print(f"no tuning-seed records in {args.results}", file=sys.stderr)
        return 1
    if refuse_to_report(flat, args.allow_mixed):
        return 2
    return publish(robustness_table(tuning_records(args.results)), args.docs, *ROBUSTNESS_MARKERS)


def add_carry_over_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``report carry-over``."""
    parser.add_argument("--tuning", default=str(REPO_ROOT / "benchmarks" / "robustness"))
    parser.add_argument("--evaluation", default=str(REPO_ROOT / "benchmarks" / "evaluation" / "results"))
    parser.add_argument(
        "--docs", default=None, help=f"also write the table into this Markdown page, between {CARRY_OVER_MARKERS[0]}"
    )
    parser.add_argument("--allow-mixed", action="store_true", help="report stale records too")


def carry_over_main(args: argparse.Namespace) -> int:
    """Did the entries chosen on the tuning seeds carry over to the evaluation seeds? An audit of the robustness rule."""
    tuning = tuning_records(args.tuning)
    evaluation = load_runs(args.evaluation, "evaluation")
    for records in (tuning, evaluation):
        if refuse_to_report([run for runs in records.values() for run in runs], args.allow_mixed):
            return 2
    return publish(carry_over_table(replacements(tuning, evaluation)), args.docs, *CARRY_OVER_MARKERS)
