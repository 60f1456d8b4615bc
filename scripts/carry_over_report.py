"""
Did the entries chosen on the tuning seeds carry over to the evaluation seeds? An audit of the robustness rule.

Every replacement of a task's entry (``scripts/robustness_report.py``: a candidate chosen against the entry on the
tuning seeds 0-4, the former entry kept in ``benchmarks/configs/former_entries*.yml``) is a prediction that the
candidate does better on seeds it has never seen. Each entry, former ones included, has since run once on the
evaluation seeds (``benchmarks/evaluation/results``), so each prediction can be checked: this script lists every
replacement with its tuning-seed evidence (both IQMs, P(new > old) with its 95% CI) next to what the evaluation seeds
gave (both IQMs, P(new > old)), and counts how many carried over (P(new > old) > 0.5 on the evaluation seeds),
separately for the replacements whose tuning P had its whole 95% CI above 0.5 and the others. A replacement is
pending, and not counted, until the new entry has run on every evaluation seed the old one ran on (its estimates are
shown before).

It chooses nothing and changes no entry: the evaluation seeds stay out of every choice of a configuration. What it
informs is the rule that makes those choices, for the verdicts still to come. Scores are read where each task is
judged (``plot_results.JUDGED_AT``: Humanoid-v5 at 1M of its 2M steps), otherwise the final model's return.

::

    python scripts/carry_over_report.py --docs docs/results/archive.md
"""

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # the sibling scripts: records, roles, fingerprints
import evaluation_report
import plot_results
import robustness_report

START, END = "<!-- carry-over:start -->", "<!-- carry-over:end -->"


def generation(record: dict[str, Any]) -> int | None:
    """
    :param record: a run
    :return: which entry of its task it ran: the former entries 0, 1, ... oldest first, then the current entry (one
        past the last former one); None for any other configuration
    """
    former = plot_results.former_generation(record)
    if former is not None:
        return former
    if plot_results.is_tuned(record):
        return len(plot_results._former_entries().get(record["env"], []))
    return None


def judged_scores(runs: list[dict[str, Any]]) -> dict[int, dict[int, float]]:
    """
    :param runs: one task's runs of ours
    :return: entry generation -> seed -> the return where the task is judged (runs without one there are left out)
    """
    scores: dict[int, dict[int, float]] = {}
    for run in runs:
        if run["algo"] == evaluation_report.OURS and (which := generation(run)) is not None:
            score = evaluation_report.score_at(run, plot_results.JUDGED_AT.get(run["env"]))
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
    # the IQMs' point estimates (evaluation_report.iqm_and_mean's, without their bootstrap)
    old_scores, new_scores = robustness_report._column(old), robustness_report._column(new)
    old_iqm, new_iqm = evaluation_report.interquartile_mean(old_scores), evaluation_report.interquartile_mean(new_scores)
    poi = evaluation_report.probability_of_improvement(new_scores, old_scores)
    return f"{old_iqm:.1f} -> {new_iqm:.1f}", f"{poi['poi']:.2f} [{poi['low']:.2f}, {poi['high']:.2f}]", poi


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
        former = plot_results._former_entries().get(env_id, [])
        current = plot_results._tuned_entries().get(env_id)
        if not former or current is None:
            continue
        entries = [*former, current]
        on_tuning, on_evaluation = judged_scores(tuning.get(env_id, [])), judged_scores(evaluation.get(env_id, []))
        for old in range(len(entries) - 1):
            new = old + 1
            tuning_iqm, tuning_poi, tuning_estimate = _compare(on_tuning.get(old, {}), on_tuning.get(new, {}))
            evaluation_iqm, evaluation_poi, evaluation_estimate = _compare(
                on_evaluation.get(old, {}), on_evaluation.get(new, {})
            )
            rows.append(
                {
                    "task": env_id,
                    "change": change(entries[old], entries[new]),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuning", default=str(benchmark.REPO_ROOT / "benchmarks" / "robustness"))
    parser.add_argument("--evaluation", default=str(benchmark.REPO_ROOT / "benchmarks" / "evaluation" / "results"))
    parser.add_argument("--docs", default=None, help=f"also write the table into this Markdown page, between {START}")
    parser.add_argument("--allow-mixed", action="store_true", help="report stale records too")
    args = parser.parse_args(argv)
    tuning = robustness_report.tuning_records(args.tuning)
    evaluation = evaluation_report.evaluation_records(args.evaluation)
    for records in (tuning, evaluation):
        if benchmark.refuse_to_report([run for runs in records.values() for run in runs], args.allow_mixed):
            return 2
    table = carry_over_table(replacements(tuning, evaluation))
    return plot_results.publish(table, args.docs, START, END)


if __name__ == "__main__":
    sys.exit(main())
