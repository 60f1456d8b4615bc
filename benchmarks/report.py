"""
Results on development seeds (100-199), with interval estimates (rliable): the statistics of the held-out protocol
(``python -m benchmarks report evaluation``).

From the records of EVALUATION seeds only (100-199), for each algorithm as ``benchmarks.entries`` labels it (ours with
an entry's settings, sb3-contrib's TRPO, SB3's PPO):

- per task: n, IQM and mean of the final returns with stratified-bootstrap 95% CIs, mean +/- std, the mean return
  along the learning curves (how soon it learned), the median ``learn()`` steps per second and the runs on each CPU
  capability;
- over the MuJoCo tasks, with returns normalized by the RL Zoo's published scores of sb3-contrib's TRPO at 1M steps:
  aggregate IQM and mean with 95% CIs, each other algorithm beside ours on the tasks both have run (``aggregate_blocks``),
  and the performance profile (the fraction of runs above each normalized score) of the widest such comparison;
- the probability of improvement of ours over sb3-contrib and over PPO (the chance that a run of ours beats a run of
  the other on the same task, averaged over tasks), with its 95% CI;
- the targets judged (``EVALUATION_TARGETS``): per MuJoCo task, ours' IQM against its target, the coefficient of
  variation against ``MAX_CV`` and the probability that a run of ours beats a run of sb3-contrib's TRPO (> 0.5), each
  "met" or "missed", and for information (no target) the probability that it beats a run of SB3's PPO;
- what tells the better runs of ours from the worse: the policy's action std early in training (at ``EARLY`` of the
  budget) in each half by final return, and its rank correlation with the final return.

With ``--summary``, the summary of every evaluation-seed record (all results folders); with ``--headline``, the
README's MuJoCo headline (ours like for like, ours tuned on the confirmation seeds, the peers). It refuses records
that mix seed roles or are stale (``benchmarks.fingerprint.record_problems``; ``--allow-mixed`` to override), and it
never reads tuning seeds::

    python -m benchmarks report evaluation --results benchmarks/evaluation/results \\
        --out benchmarks/evaluation/report.md --plots benchmarks/evaluation/plots
    python -m benchmarks report evaluation --results benchmarks/masked/results --docs docs/results.md --section masked
    python -m benchmarks report evaluation --results benchmarks/evaluation/results --docs docs/results/archive.md \\
        --section evaluation
    python -m benchmarks report evaluation --summary docs/index.md docs/results.md docs/algorithms/trpo.md
    python -m benchmarks report evaluation --headline README.md docs/results.md docs/algorithms/trpo.md

``report robustness`` and ``report carry-over`` (:mod:`benchmarks.tuning`) judge the choices made on tuning seeds.
"""

import argparse
import functools
import json
import os
import sys
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT, entries, stats, tuning
from benchmarks.algorithms import ALGORITHMS
from benchmarks.docs import replace_block, write_block
from benchmarks.fingerprint import refuse_to_report
from benchmarks.plot import pyplot, save
from benchmarks.records import EARLY, load_runs, record_key, run_std_at, score_at
from benchmarks.stats import (
    iqm_and_mean,
    iqm_curve,
    learning_curves,
    poi_with_ci,
    probability_of_improvement,
    with_ci,
)

#: The RL Zoo's published returns of sb3-contrib's TRPO at 1M steps (rl-baselines3-zoo's benchmark.md): the normalization
ZOO_PUBLISHED = {"HalfCheetah-v5": 1785.0, "Hopper-v5": 3618.0, "Walker2d-v5": 4933.0, "Ant-v5": 4982.0, "Swimmer-v5": 366.0}
OURS, CONTRIB, PPO = "sb3_trpo", "sb3_contrib", "ppo"
#: The held-out protocol's targets for ours (IQM over evaluation seeds): task -> (target, the training steps at which
#: it is judged; None: the final model). The RL Zoo's published returns where it has them; HalfCheetah-v5 5000; Ant-v5
#: and Humanoid-v5 (at 1M of its 2M steps) Tianshou's TRPO at 1M
EVALUATION_TARGETS: dict[str, tuple[float, int | None]] = {
    "HalfCheetah-v5": (5000.0, None),
    "Hopper-v5": (3618.0, None),
    "Walker2d-v5": (4933.0, None),
    "Swimmer-v5": (366.0, None),
    "Ant-v5": (2867.0, None),
    "Humanoid-v5": (810.0, entries.JUDGED_AT["Humanoid-v5"]),
}
#: the largest coefficient of variation (std / |mean| of the judged returns over seeds) that meets the target
MAX_CV = 0.15


def headline_scores(records: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[int, float]]]:
    """
    :return: algorithm label -> task -> seed -> final return, for the headline variants (each algorithm with the Zoo's
        settings, ours with its entry marked ``# Tuned``), as ``benchmarks.entries`` chooses them
    """
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for env_id, runs in records.items():
        for run in runs:
            if entries.is_headline(run):
                label = entries.variant_label(run)
                scores.setdefault(label, {}).setdefault(env_id, {})[run["seed"]] = run["final_eval"]["mean"]
    return scores


#: ours in the MuJoCo aggregate, one label across tasks: on each task its entry of ``zoo_configs/trpo.yml``
OURS_ENTRIES = ALGORITHMS[OURS].label.replace("(ours)", "(ours, each task's entry)")


def aggregate_scores(records: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[int, float]]]:
    """
    The scores the MuJoCo aggregate compares, one label per algorithm across tasks (``headline_scores`` labels ours by
    what each task's entry changes, so no label of ours spans two tuned tasks).

    :return: algorithm label -> task -> seed -> final return: each other algorithm with the Zoo's settings, and ours
        (``OURS_ENTRIES``) with each task's current entry: its ``# Tuned`` entry where its runs exist, else the Zoo's
        settings; never a former entry nor a candidate
    """
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for env_id, runs in records.items():
        tuned = any(entries.is_tuned(run) for run in runs)
        for run in runs:
            if not entries.is_headline(run) or entries.is_former_entry(run):
                continue
            if run["algo"] == OURS and tuned and not entries.is_tuned(run):
                continue
            label = OURS_ENTRIES if run["algo"] == OURS else entries.variant_label(run)
            scores.setdefault(label, {}).setdefault(env_id, {})[run["seed"]] = run["final_eval"]["mean"]
    return scores


def score_matrix(by_task: dict[str, dict[int, float]], tasks: list[str], normalize: bool) -> np.ndarray:
    """:return: shape (n_seeds, n_tasks) over the seeds every task has, normalized by ``ZOO_PUBLISHED`` when asked"""
    seeds = sorted(set.intersection(*(set(by_task[task]) for task in tasks)))
    matrix = np.array([[by_task[task][seed] for task in tasks] for seed in seeds], dtype=np.float64)
    if normalize:
        matrix = matrix / np.array([ZOO_PUBLISHED[task] for task in tasks])
    return matrix


def _is_our_trpo(label: str) -> bool:
    # our TRPO with the Zoo's settings ("sb3_trpo TRPO (ours)") or its tuned entry ("sb3_trpo TRPO (ours, tuned), ...")
    return label.startswith(ALGORITHMS[OURS].label.removesuffix(")"))


def _former_labels(runs: list[dict[str, Any]]) -> set[str]:
    """:return: the headline labels of the runs of ours with a former entry (``(ours, former entry)``)"""
    return {label for run in runs if (label := entries.headline_label(run)) and entries.is_former_entry(run)}


def _curve_and_speed(runs: list[dict[str, Any]]) -> tuple[str, str]:
    """
    :param runs: the runs of one algorithm on one task
    :return: the mean over runs of each run's mean evaluated return along its learning curve (the area under the
        curve per evaluation: higher means it learned sooner), and the median of the runs' ``learn()`` steps/s
        (each run on one core; indicative when other work shared the machine); "-" where the records lack them
    """
    curves = [np.mean([point["mean"] for point in run["learning_curve"]]) for run in runs if run.get("learning_curve")]
    speeds = [run["steps_per_second"] for run in runs if run.get("steps_per_second")]
    curve = f"{np.mean(curves):.1f}" if curves else "-"
    return curve, f"{np.median(speeds):.0f}" if speeds else "-"


def cpu_capabilities(runs: list[dict[str, Any]]) -> str:
    """
    :param runs: the runs of one algorithm on one task
    :return: how many ran on each CPU capability (``AVX2 6, AVX512 4``; torch's vector kernels, which decide whether
        a run reproduces bit for bit), "unknown" for records that do not say; "-" without runs
    """
    counts = Counter((run.get("hardware") or {}).get("cpu_capability") or "unknown" for run in runs)
    return ", ".join(f"{capability} {count}" for capability, count in sorted(counts.items())) or "-"


def per_task_table(records: dict[str, list[dict[str, Any]]], former_entries: bool = True) -> str:
    """
    :param former_entries: whether to list ours with its former entries too (``False``: each task's current entry
        and the other algorithms only)
    :return: the Markdown table of each task and algorithm (tasks with at least 2 runs of it)
    """
    scores = headline_scores(records)
    if not former_entries:
        former = set().union(*map(_former_labels, records.values()))
        scores = {label: by_task for label, by_task in scores.items() if label not in former}
    header = "| task | algorithm | n | IQM [95% CI] | mean [95% CI] | mean +/- std | curve mean | learn() steps/s | CPUs |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for env_id in sorted(records):
        for label, by_task in sorted(scores.items()):
            if env_id not in by_task or len(by_task[env_id]) < 2:
                continue
            values = np.array(list(by_task[env_id].values()))
            estimate = iqm_and_mean(values)
            runs = [run for run in records[env_id] if entries.headline_label(run) == label]
            curve, speed = _curve_and_speed(runs)
            lines.append(
                f"| {env_id} | {label} | {len(values)} | {with_ci(estimate, 'iqm', 1)} | {with_ci(estimate, 'mean', 1)}"
                f" | {values.mean():.1f} +/- {values.std():.1f} | {curve} | {speed} | {cpu_capabilities(runs)} |"
            )
    return "\n".join(lines) + "\n"


def tables(records: dict[str, list[dict[str, Any]]]) -> str:
    """
    :return: the per-task table, then the targets judged and the exploration table where the records have a target
        task (what ``--docs`` writes)
    """
    targets = targets_table(records)
    text = per_task_table(records) + (f"\nTargets, judged on development seeds only:\n\n{targets}" if targets else "")
    exploration = exploration_table(records)
    if exploration:
        text += (
            f"\nThe policy's action noise early in training against the final return (ours; `std`: the mean of"
            f" exp(log_std) over action dimensions, logged at each update; at the update nearest {EARLY:.0%} of the"
            f" budget; halves by final return):\n\n{exploration}"
        )
    return text


def aggregate_blocks(scores: dict[str, dict[str, dict[int, float]]]) -> list[tuple[list[str], list[str]]]:
    """
    Which algorithms the MuJoCo aggregate compares on which tasks: each other algorithm against ours on the MuJoCo
    tasks both have run (at least 2 runs each), so that one still partly run (PPO while its grid fills) neither drops
    tasks from the comparison of the others nor stays out of its own.

    :param scores: ``aggregate_scores``
    :return: (tasks, labels) blocks, ours first in each; algorithms that share their task set with ours share a
        block; the block with the most tasks first. Without ours, one block of every algorithm on their common tasks
    """

    def tasks_of(label: str) -> set[str]:
        return {task for task in ZOO_PUBLISHED if len(scores[label].get(task, {})) >= 2}

    if OURS_ENTRIES not in scores:
        common = set.intersection(*map(tasks_of, scores)) if scores else set()
        return [(sorted(common), sorted(scores))] if common else []
    ours = tasks_of(OURS_ENTRIES)
    blocks: dict[tuple[str, ...], list[str]] = {}
    for label in sorted(scores):
        tasks = tuple(sorted(ours & tasks_of(label)))
        if label != OURS_ENTRIES and tasks:
            blocks.setdefault(tasks, [OURS_ENTRIES]).append(label)
    if not blocks and ours:
        blocks[tuple(sorted(ours))] = [OURS_ENTRIES]
    return [(list(tasks), labels) for tasks, labels in sorted(blocks.items(), key=lambda block: -len(block[0]))]


def report(records: dict[str, list[dict[str, Any]]], plots: Path | None) -> str:
    """
    :return: the Markdown report (per-task table, the MuJoCo aggregate of each comparison, probabilities of
        improvement)
    """
    scores = aggregate_scores(records)
    text = tables(records)
    others = [ALGORITHMS[CONTRIB].label, ALGORITHMS[PPO].label]
    improvements: dict[tuple[str, str], dict[str, float]] = {}
    for index, (tasks, labels) in enumerate(aggregate_blocks(scores)):
        normalized = {label: score_matrix(scores[label], tasks, normalize=True) for label in labels}
        text += f"\nMuJoCo aggregate ({', '.join(tasks)}; returns / the RL Zoo's published sb3-contrib TRPO returns):\n\n"
        text += "| algorithm | runs x tasks | IQM [95% CI] | mean [95% CI] |\n|---|---|---|---|\n"
        for label, matrix in sorted(normalized.items()):
            estimate = iqm_and_mean(matrix)
            text += (
                f"| {label} | {matrix.shape[0]} x {matrix.shape[1]} | {with_ci(estimate, 'iqm', 2)}"
                f" | {with_ci(estimate, 'mean', 2)} |\n"
            )
        pairs = [(mine, other) for mine in normalized if _is_our_trpo(mine) for other in others if other in normalized]
        block = {(mine, other): probability_of_improvement(normalized[mine], normalized[other]) for mine, other in pairs}
        if block:
            text += "\n| probability of improvement | P(X > Y) [95% CI] |\n|---|---|\n"
            for (mine, other), poi in block.items():
                text += f"| {mine} over {other} | {poi_with_ci(poi)} |\n"
        improvements.update(block)
        if plots is not None and index == 0:
            plot_performance_profile(normalized, plots / "performance_profile.png")
    if plots is not None:
        if improvements:
            plot_probabilities_of_improvement(improvements, plots / "probability_of_improvement.png")
        plot_learning_curves(records, plots)
    return text


def _judged_scores(runs: list[dict[str, Any]], label: str, steps: int | None) -> np.ndarray:
    scores = [score_at(run, steps) for run in runs if entries.headline_label(run) == label]
    return np.array([score for score in scores if score is not None], dtype=np.float64)


#: the evaluation seeds each target task's configuration runs on (100-109); its targets are judged once all have run
JUDGED_SEEDS = 10


def _verdict(met: bool, n: int) -> str:
    if n < JUDGED_SEEDS:
        return f"pending ({n} of {JUDGED_SEEDS})"
    return "met" if met else "**missed**"


def _improvement_over(scores: np.ndarray, others: np.ndarray) -> dict[str, float] | None:
    """:return: P(a run of ``scores`` > a run of ``others``) with its 95% CI; None until ``others`` has 2+ runs"""
    if len(others) < 2:
        return None
    return probability_of_improvement(scores, others)


def judged_targets(records: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """
    ``EVALUATION_TARGETS`` judged for ours: each headline variant of our TRPO with 2+ runs on a target task.

    :return: one dict per (task, variant), in the targets' order: ``env``, ``label``, ``former`` (a former entry),
        ``n``, ``steps`` (where it is judged; None: the final model), ``target``, ``estimate`` (IQM and mean with
        their 95% CIs), ``cv``, ``contrib`` and ``ppo`` (P(ours > it) with its 95% CI, None until it has 2+ runs
        there) and ``contrib_n`` and ``ppo_n`` (its numbers of runs)
    """
    contrib, ppo = ALGORITHMS[CONTRIB].label, ALGORITHMS[PPO].label
    judged = []
    for env_id, (target, steps) in EVALUATION_TARGETS.items():
        runs = records.get(env_id, [])
        former = _former_labels(runs)
        for label in sorted({label for run in runs if (label := entries.headline_label(run)) and _is_our_trpo(label)}):
            scores = _judged_scores(runs, label, steps)
            if len(scores) < 2:
                continue
            others, ppo_scores = _judged_scores(runs, contrib, steps), _judged_scores(runs, ppo, steps)
            judged.append(
                {
                    "env": env_id,
                    "label": label,
                    "former": label in former,
                    "n": len(scores),
                    "steps": steps,
                    "target": target,
                    "estimate": iqm_and_mean(scores),
                    "cv": float(scores.std() / abs(scores.mean())),
                    "contrib": _improvement_over(scores, others),
                    "contrib_n": len(others),
                    "ppo": _improvement_over(scores, ppo_scores),
                    "ppo_n": len(ppo_scores),
                }
            )
    return judged


def targets_table(records: dict[str, list[dict[str, Any]]]) -> str:
    """
    :return: the Markdown table judging ``EVALUATION_TARGETS`` for ours (``judged_targets``): IQM [95% CI] against
        the target, the coefficient of variation against ``MAX_CV``, and P(ours > sb3-contrib's TRPO) [95% CI] on the
        task against 0.5 ("-" until sb3-contrib has 2+ runs there) with sb3-contrib's number of runs; that verdict is
        provisional while sb3-contrib has fewer runs than ours; each verdict is pending until ours has run on
        ``JUDGED_SEEDS`` seeds (the estimates are shown before); then P(ours > SB3's PPO) [95% CI] with PPO's number
        of runs, for information (no target; "-" until PPO has 2+ runs there); empty when no target task has runs of
        ours
    """
    lines = []
    for row in judged_targets(records):
        n = row["n"]
        if (poi := row["contrib"]) is not None:
            verdict = _verdict(poi["poi"] > 0.5, n)
            verdict += " (provisional)" if row["contrib_n"] < n and n >= JUDGED_SEEDS else ""
            improvement = f"{poi_with_ci(poi)} | {row['contrib_n']} | {verdict}"
        else:
            improvement = f"- | {row['contrib_n']} | -"
        improvement += f" | {poi_with_ci(row['ppo']) if row['ppo'] is not None else '-'} | {row['ppo_n']}"
        at = "final" if row["steps"] is None else f"{row['steps']:,} steps"
        lines.append(
            f"| {row['env']} | {row['label']} | {n} | {at} | {row['target']:g} | {with_ci(row['estimate'], 'iqm', 1)}"
            f" | {_verdict(row['estimate']['iqm'] >= row['target'], n)} | {row['cv']:.3f}"
            f" | {_verdict(row['cv'] <= MAX_CV, n)} | {improvement} |"
        )
    if not lines:
        return ""
    header = (
        f"| task | ours | n | judged at | target (IQM) | IQM [95% CI] | IQM >= target | CV | CV <= {MAX_CV:g} "
        "| P(ours > sb3-contrib TRPO) [95% CI] | sb3-contrib n | > 0.5 | P(ours > SB3 PPO) [95% CI] | PPO n |\n"
        "|---|---|---|---|---:|---|---|---:|---|---|---:|---|---|---:|\n"
    )
    return header + "\n".join(lines) + "\n"


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def targets_summary(records: dict[str, list[dict[str, Any]]]) -> str:
    """
    :return: one paragraph on each target for ours with each task's current entry on the development seeds
        (``judged_targets`` less the former entries), which says that these seeds judge nothing and names the targets
        the confirmation seeds judge where they were raised since (``CONFIRMATION_TARGETS``); per target, the tasks
        that met it and those that missed it, each with its value; tasks that have not run on ``JUDGED_SEEDS`` seeds
        yet are pending; empty when no target task has runs of ours
    """
    rows = [row for row in judged_targets(records) if not row["former"]]
    if not rows:
        return ""

    def task(row: dict[str, Any]) -> str:
        return row["env"] + ("" if row["steps"] is None else f" at {row['steps'] / 1e6:g}M steps")

    def always(row: dict[str, Any]) -> bool:
        return True

    # (target, whether it applies to a row, whether the row meets it, the row's value)
    checks = [
        (
            "IQM >= target",
            always,
            lambda row: row["estimate"]["iqm"] >= row["target"],
            lambda row: f"{row['estimate']['iqm']:.1f} against {row['target']:g}",
        ),
        # a CV that rounds to the bound is written to a fourth digit, so that its verdict reads right
        (
            f"CV <= {MAX_CV:g}",
            always,
            lambda row: row["cv"] <= MAX_CV,
            lambda row: f"{row['cv']:.{3 + (round(row['cv'], 3) == MAX_CV)}f}",
        ),
        (
            "P(ours > sb3-contrib's TRPO) > 0.5",
            lambda row: row["contrib"] is not None,
            lambda row: row["contrib"]["poi"] > 0.5,
            lambda row: f"{row['contrib']['poi']:.2f} [{row['contrib']['low']:.2f}, {row['contrib']['high']:.2f}]",
        ),
    ]
    sentences = []
    for name, applies, met, value in checks:
        verdicts: dict[str, list[str]] = {"met": [], "missed": [], "pending": []}
        for row in filter(applies, rows):
            outcome = "pending" if row["n"] < JUDGED_SEEDS else "met" if met(row) else "missed"
            verdicts[outcome].append(
                f"{task(row)} ({value(row)}" + (f", {row['n']} of {JUDGED_SEEDS} seeds)" if outcome == "pending" else ")")
            )
        parts = [f"{outcome} on {_listed(tasks)}" for outcome, tasks in verdicts.items() if tasks]
        sentences.append(f"{name}: " + "; ".join(parts) + ".")
    raised = [
        f"{env_id} {CONFIRMATION_TARGETS[env_id][0]:g}"
        for env_id, (target, _) in EVALUATION_TARGETS.items()
        if CONFIRMATION_TARGETS[env_id][0] != target
    ]
    return (
        "Targets on the development seeds (ours with each task's current entry), no judgment: these seeds steered the "
        "search, so the targets are judged on the confirmation seeds only, in the MuJoCo headline"
        + (f", against targets since raised ({_listed(raised)})" if raised else "")
        + ". Against the targets set before: "
        + " ".join(sentences)
        + "\n"
    )


def exploration_table(records: dict[str, list[dict[str, Any]]]) -> str:
    """
    :return: the Markdown table, per target task and headline variant of ours with 4+ runs that log their action
        std: the mean final return and the mean action std at ``EARLY`` of the budget in the better and the worse
        half of the runs by final return (the middle run left out when n is odd), and Spearman's rank correlation
        between the two over all runs; empty when no task qualifies
    """
    from scipy.stats import spearmanr

    lines = []
    for env_id in EVALUATION_TARGETS:
        runs = records.get(env_id, [])
        for label in sorted({label for run in runs if (label := entries.headline_label(run)) and _is_our_trpo(label)}):
            pairs = [
                (float(run["final_eval"]["mean"]), std)
                for run in runs
                if entries.headline_label(run) == label and (std := run_std_at(run, EARLY)) is not None
            ]
            if len(pairs) < 4:
                continue
            pairs.sort(reverse=True)
            half = len(pairs) // 2
            better, worse = np.array(pairs[:half]), np.array(pairs[-half:])
            rho = float(spearmanr([p[1] for p in pairs], [p[0] for p in pairs]).statistic)
            lines.append(
                f"| {env_id} | {label} | {len(pairs)} | {better[:, 0].mean():.1f} / {worse[:, 0].mean():.1f}"
                f" | {better[:, 1].mean():.3f} / {worse[:, 1].mean():.3f} | {rho:.2f} |"
            )
    if not lines:
        return ""
    header = (
        f"| task | ours | n | final return: better / worse half | std at {EARLY:.0%} of training: better / worse half"
        f" | Spearman rho (std at {EARLY:.0%}, final return) |\n|---|---|---|---|---|---:|\n"
    )
    return header + "\n".join(lines) + "\n"


def plot_learning_curves(records: dict[str, list[dict[str, Any]]], plots: Path) -> list[Path]:
    """
    One figure per task: each headline algorithm's IQM over runs of the evaluated return along training, with its
    95% bootstrap band (:func:`iqm_curve`); written as ``PLOTS/curves_TASK.png``.

    :return: the files written
    """
    plt = pyplot()
    written = []
    for env_id, runs in sorted(records.items()):
        by_label: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            label = entries.headline_label(run)
            if label is not None and run.get("learning_curve"):
                by_label.setdefault(label, []).append(run)
        if not by_label:
            continue
        figure, axis = plt.subplots(figsize=(7, 4))
        for label, label_runs in sorted(by_label.items()):
            steps, returns = learning_curves(label_runs)
            if len(label_runs) < 2 or not len(steps):
                continue
            curve = iqm_curve(returns)
            # long labels (an entry's hyperparameters) wrap, in a legend under the axes that never covers them
            wrapped = textwrap.fill(f"{label} (n={len(label_runs)})", 110, subsequent_indent="    ")
            (line,) = axis.plot(steps, curve["iqm"], label=wrapped)
            axis.fill_between(steps, curve["low"], curve["high"], alpha=0.2, color=line.get_color())
        axis.set_title(f"{env_id}: IQM over development seeds, 95% bootstrap CI", fontsize=10)
        axis.set_xlabel("timesteps")
        axis.set_ylabel("evaluated return")
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
        path = plots / f"curves_{env_id}.png"
        save(figure, path, bbox_inches="tight")
        written.append(path)
    return written


def plot_probabilities_of_improvement(pairs: dict[tuple[str, str], dict[str, float]], path: Path) -> None:
    """``P(X > Y)`` of each pair with its 95% CI, as horizontal intervals (rliable's presentation)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 0.6 + 0.5 * len(pairs)))
    for row, poi in enumerate(pairs.values()):
        axis.plot([poi["low"], poi["high"]], [row, row], linewidth=6, alpha=0.5)
        axis.plot([poi["poi"]], [row], "k|", markersize=14)
    axis.axvline(0.5, linestyle="--", color="grey")
    axis.set_yticks(range(len(pairs)), [f"{mine}\nover {other}" for mine, other in pairs], fontsize=8)
    axis.set_xlim(0.0, 1.0)
    axis.set_xlabel("P(X > Y), 95% CI")
    figure.tight_layout()
    save(figure, path)


def plot_performance_profile(normalized: dict[str, np.ndarray], path: Path) -> None:
    """The fraction of runs whose normalized score exceeds each threshold, with 95% CIs (rliable)."""
    plt = pyplot()
    from rliable import library as rly
    from rliable import plot_utils

    taus = np.linspace(0.0, max(2.0, max(float(matrix.max()) for matrix in normalized.values())), 81)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        profiles, cis = rly.create_performance_profile(normalized, taus, reps=stats.BOOTSTRAP_REPS)
    figure, axis = plt.subplots(figsize=(7, 4))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=axis, xlabel="normalized return")
    # one line per algorithm, in the profiles' order (the bands are not legend entries)
    axis.legend(axis.get_lines()[: len(profiles)], list(profiles), loc="upper right", fontsize=8)
    figure.tight_layout()
    save(figure, path)


#: Where the records of evaluation seeds are (the grid, the ablation, the masked and recurrent benchmarks)
EVALUATION_FOLDERS = (
    "benchmarks/evaluation/results",
    "benchmarks/results",
    "benchmarks/ablation/results",
    "benchmarks/masked/results",
    "benchmarks/recurrent/results",
)
SUMMARY_START, SUMMARY_END = "<!-- evaluation-summary:start -->", "<!-- evaluation-summary:end -->"
SUMMARY_MARKERS = (SUMMARY_START, SUMMARY_END)


def merged_evaluation_records(folders: tuple[str, ...] = EVALUATION_FOLDERS) -> dict[str, list[dict[str, Any]]]:
    """
    :param folders: results folders, relative to the repository's root (missing ones are skipped)
    :return: the evaluation-seed runs of each task over all of them; a run in two folders (the same algorithm, seed,
        budget and hyperparameters: the grid's copy of an ablation run) counts once, from the first folder
    """
    merged: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str, int, int, str]] = set()
    for folder in folders:
        path = REPO_ROOT / folder
        if path.is_dir():
            for env_id, runs in load_runs(path, "evaluation").items():
                for run in runs:
                    key = record_key(run)
                    if key not in seen:
                        seen.add(key)
                        merged.setdefault(env_id, []).append(run)
    return merged


def evaluation_summary(records: dict[str, list[dict[str, Any]]]) -> str:
    """
    :return: the summary of every result on evaluation seeds: the per-task table of each algorithm's headline
        settings, and a note on what it holds
    """
    note = (
        "Development seeds only (100 and up: no configuration was chosen on them, but for ours they steered which candidates "
        "were made; the peers' runs are unbiased), each configuration run once on them: final "
        "return of the final model, deterministic, 20 episodes; IQM and mean with stratified-bootstrap 95% CIs "
        "(rliable); curve mean: the mean evaluated return along the learning curve; steps/s: `learn()` on one core "
        "(indicative: other work shared the machine, and machines differ); CPUs: the runs on each CPU capability "
        "(torch's vector kernels: a run reproduces bit for bit only on the same one and the same CPU model; unknown: "
        "an older record). "
        "Ours with the task's current entry of `zoo_configs/` (`(ours, tuned)`: "
        "a `# Tuned` entry, with what it changes from the RL Zoo's values; the entries these replaced on tuning-seed "
        "evidence are in `docs/results/archive.md`, with their development-seed runs and what each replacement changed); "
        "the others "
        "with their Zoo settings. Records: "
        + ", ".join(f"`{folder}/`" for folder in EVALUATION_FOLDERS if (REPO_ROOT / folder).is_dir())
        + ". Regenerate: `python -m benchmarks report evaluation --summary docs/index.md docs/results.md "
        "docs/algorithms/trpo.md`."
    )
    targets = targets_summary(records)
    return per_task_table(records, former_entries=False) + "\n" + (targets + "\n" if targets else "") + note + "\n"


#: The headline's records: ours with sb3-contrib's trust region and the Zoo's own entries (like for like), and ours
#: tuned on the confirmation seeds; sb3-contrib's TRPO and SB3's PPO at the Zoo's settings on seeds 100-109
LIKE_FOR_LIKE_FOLDER, CONFIRMATION_FOLDER = "benchmarks/like_for_like/results", "benchmarks/confirmation/results"
HEADLINE_TASKS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5", "Humanoid-v5")
#: the tasks run like for like (no Zoo settings ran on Humanoid-v5: ours tuned only)
LIKE_FOR_LIKE_TASKS = HEADLINE_TASKS[:-1]
#: Targets of the tuned entries, judged on the confirmation seeds only: task -> (IQM target, steps where judged)
CONFIRMATION_TARGETS: dict[str, tuple[float, int | None]] = {
    "HalfCheetah-v5": (5800.0, None),
    "Hopper-v5": (3618.0, None),
    "Walker2d-v5": (4933.0, None),
    "Ant-v5": (3554.0, None),
    "Swimmer-v5": (366.0, None),
    "Humanoid-v5": (810.0, 1_000_000),
}
HEADLINE_START, HEADLINE_END = "<!-- headline:start -->", "<!-- headline:end -->"
HEADLINE_MARKERS = (HEADLINE_START, HEADLINE_END)


def headline_records() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """
    :return: column -> task -> runs: ``contrib_settings`` (ours, ``sb3_trpo_contrib_kl``, seeds 100-109),
        ``tuned`` (ours, confirmation seeds), ``sb3_contrib`` and ``ppo`` (the Zoo's settings, seeds 100-109), and
        ``development`` (ours with the same tuned entries on the development seeds 100-109, which steered their search)
    """

    def load(folder: str) -> dict[str, list[dict[str, Any]]]:
        path = REPO_ROOT / folder
        return load_runs(str(path)) if path.is_dir() else {}

    like_for_like, confirmation, development = (
        load(LIKE_FOR_LIKE_FOLDER),
        load(CONFIRMATION_FOLDER),
        load("benchmarks/evaluation/results"),
    )

    def pick(runs: dict[str, list[dict[str, Any]]], algo: str, role: str, zoo: bool) -> dict[str, list[dict[str, Any]]]:
        return {
            env_id: [
                run
                for run in env_runs
                if run["algo"] == algo and run.get("seed_role") == role and (not zoo or entries.is_headline(run))
            ]
            for env_id, env_runs in runs.items()
        }

    return {
        "contrib_settings": pick(like_for_like, "sb3_trpo_contrib_kl", "evaluation", zoo=False),
        "tuned": pick(confirmation, OURS, "confirmation", zoo=False),
        "sb3_contrib": pick(development, CONTRIB, "evaluation", zoo=True),
        "ppo": pick(development, PPO, "evaluation", zoo=True),
        "development": {
            env_id: [run for run in runs if entries.is_tuned(run)]
            for env_id, runs in pick(development, OURS, "evaluation", zoo=False).items()
        },
    }


def _iqm_cell(scores: np.ndarray, expected: int | None = None) -> str:
    if len(scores) == 0:
        return f"pending (0 of {expected})" if expected else "-"
    if len(scores) == 1:
        return f"{scores[0]:.1f} (n=1)"
    estimate = iqm_and_mean(scores)
    return f"{estimate['iqm']:.1f} [{estimate['iqm_low']:.1f}, {estimate['iqm_high']:.1f}] (n={len(scores)})"


#: learn() side by side, ours with sb3-contrib's settings and sb3-contrib's TRPO (``python -m benchmarks bench learn``)
SIDE_BY_SIDE = REPO_ROOT / "benchmarks" / "like_for_like" / "bench_learn.json"


def side_by_side_minutes(path: Path = SIDE_BY_SIDE) -> tuple[dict[str, tuple[float, float]], str]:
    """
    :param path: the JSON of ``bench learn --variants ours_contrib_settings sb3_contrib``
    :return: task -> learn() minutes per 1M steps of ours with sb3-contrib's settings and of sb3-contrib's TRPO, at
        the steps per second measured side by side in one process on one core; and the CPU it ran on
    """
    if not path.is_file():
        return {}, "-"
    bench = json.loads(path.read_text())
    minutes = {
        env_id: (1e6 / speeds["ours_contrib_settings"] / 60, 1e6 / speeds["sb3_contrib"] / 60)
        for env_id, speeds in bench["median_steps_per_s"].items()
    }
    return minutes, bench["hardware"]["cpu"]


def headline_links(page: str | Path) -> tuple[str, str]:
    """
    Where the headline's column names link to, relative to the page that holds it: from the README, the like-for-like
    folder's README and the confirmation entries; from a docs page, the reproducing guide's section on the headline
    (Sphinx cannot link a Markdown file outside docs/) and the confirmation entries (a download).

    :param page: the Markdown page (README.md, docs/results.md)
    :return: the links of "ours, sb3-contrib's settings" and of "ours, tuned"
    """
    folder = Path(page).resolve().parent

    def relative(path: Path) -> str:
        return Path(os.path.relpath(path, folder)).as_posix()

    confirmation = relative(REPO_ROOT / "benchmarks" / "confirmation" / "entries.yml")
    docs = REPO_ROOT / "docs"
    if folder == docs or docs in folder.parents:
        return relative(docs / "guide" / "reproducing.md") + "#the-mujoco-headline", confirmation
    return relative(REPO_ROOT / "benchmarks" / "like_for_like" / "README.md"), confirmation


def headline_table(columns: dict[str, dict[str, list[dict[str, Any]]]], page: str | Path = REPO_ROOT / "README.md") -> str:
    """
    The README's results: one row per MuJoCo task, each cell IQM [95% CI] (n) of the final returns (Humanoid-v5's
    tuned entry at 1M of its 2M steps), a line naming the tasks whose only runs are the tuned entry's (their other cells
    are dashes), then the targets of the tuned entries, judged on the confirmation seeds only (a pending entry with its
    IQM so far, or its one run), each judged entry on the development seeds beside the confirmation seeds, P(ours >
    sb3-contrib's TRPO) like for like and, once that grid is complete, :func:`like_for_like_verdict`.

    :param columns: :func:`headline_records`
    :param page: the page that holds the table, whose folder its links are relative to (:func:`headline_links`)
    :return: Markdown
    """
    like_for_like_link, tuned_link = headline_links(page)
    minutes, cpu = side_by_side_minutes()
    header = (
        f"| task | budget | [ours, sb3-contrib's settings]({like_for_like_link}) "
        f"| [ours, tuned]({tuned_link}) (confirmation seeds) | sb3-contrib TRPO | SB3 PPO "
        "| learn() minutes per 1M steps, side by side: ours, sb3-contrib's settings / sb3-contrib "
        "|\n|---|---|---|---|---|---|---|"
    )
    rows, verdicts, improvements = [header], [], []
    judged_pairs: dict[str, tuple[dict[str, float], int]] = {}
    met: dict[str, bool] = {}
    optimism: list[str] = []  # the judged entries on the development seeds, then on the confirmation seeds
    tuned_only: list[str] = []  # the tasks where only the tuned entry has runs
    for env_id in HEADLINE_TASKS:
        target, steps = CONFIRMATION_TARGETS[env_id]
        runs = {column: by_task.get(env_id, []) for column, by_task in columns.items()}
        zoo_task = env_id in LIKE_FOR_LIKE_TASKS
        tuned = np.array([score for run in runs["tuned"] if (score := score_at(run, steps)) is not None])
        finals = {column: _judged_scores_of(runs[column]) for column in ("contrib_settings", "sb3_contrib", "ppo")}
        budget = "2M (judged at 1M)" if steps else "1M"
        rows.append(
            f"| {env_id} | {budget} | {_iqm_cell(finals['contrib_settings'], 10 if zoo_task else None)} "
            f"| {_iqm_cell(tuned, 10)} | {_iqm_cell(finals['sb3_contrib'])} | {_iqm_cell(finals['ppo'])} "
            f"| {' / '.join(f'{value:.1f}' for value in minutes[env_id]) if env_id in minutes else '- / -'} |"
        )
        estimate = iqm_and_mean(tuned)["iqm"] if len(tuned) > 1 else tuned[0] if len(tuned) else float("nan")
        shown = f"{estimate:.1f}" if len(tuned) else "-"
        if len(tuned) and not any(len(scores) for scores in finals.values()):
            tuned_only.append(env_id)
        verdicts.append(f"{env_id} {_verdict(bool(estimate >= target), len(tuned))} ({shown} against {target:g})")
        ours = finals["contrib_settings"]
        improvement = _improvement_over(ours, finals["sb3_contrib"]) if len(ours) > 1 else None
        if improvement is not None:
            improvements.append(f"{env_id} {poi_with_ci(improvement)} (n={len(finals['contrib_settings'])})")
            judged_pairs[env_id] = (improvement, min(len(ours), len(finals["sb3_contrib"])))
        if len(tuned) >= JUDGED_SEEDS:
            met[env_id] = bool(estimate >= target)
            developed = [
                score for run in columns.get("development", {}).get(env_id, []) if (score := score_at(run, steps)) is not None
            ]
            if len(developed) > 1:
                optimism.append(f"{env_id} {_iqm_cell(np.array(developed))} and {_iqm_cell(tuned)}")
    text = "\n".join(rows) + "\n\n"
    if tuned_only:
        text += (
            f"A dash: no runs. {_listed(tuned_only)} {'has' if len(tuned_only) == 1 else 'have'} runs of the tuned entry "
            "only: neither peer nor our TRPO at sb3-contrib's settings has been run there.\n\n"
        )
    text += (
        "learn() minutes per 1M steps: at the steps per second measured side by side, in one process on one core with "
        "torch on one thread, the Zoo's settings for both, interleaved over three rounds "
        f"(`benchmarks/like_for_like/bench_learn.txt`, {cpu}); the runs' own training times, on machines shared with "
        "other work, are in their records.\n\n"
    )
    text += (
        f"Targets of the tuned entries (IQM), judged on the confirmation seeds only ({sum(met.values())} met of "
        f"{len(met)} judged, {len(HEADLINE_TASKS) - len(met)} pending): " + "; ".join(verdicts) + ".\n"
    )
    if optimism:
        text += (
            "\nEach judged entry on the development seeds 100-109, which steered its search, then on the confirmation "
            "seeds: " + "; ".join(optimism) + ".\n"
        )
    if improvements:
        text += (
            "\nP(ours > sb3-contrib's TRPO), like for like (the same settings and seeds): " + "; ".join(improvements) + ".\n"
        )
        text += like_for_like_verdict(judged_pairs, list(LIKE_FOR_LIKE_TASKS))
    return text


def like_for_like_verdict(judged: dict[str, tuple[dict[str, float], int]], tasks: list[str]) -> str:
    """
    What the like-for-like grid shows once it is complete: on which tasks the 95% CI of P(ours > sb3-contrib's TRPO)
    lies wholly above or below 0.5 (a difference in learning that ten seeds resolve), on which it holds 0.5.

    :param judged: task -> (P with its CI, the smaller number of runs of the two), the tasks with a P so far
    :param tasks: the tasks of the grid
    :return: one paragraph, empty until every task has ``JUDGED_SEEDS`` runs of both
    """
    if any(env_id not in judged or judged[env_id][1] < JUDGED_SEEDS for env_id in tasks):
        return ""
    above = [env_id for env_id in tasks if judged[env_id][0]["low"] > 0.5]
    below = [env_id for env_id in tasks if judged[env_id][0]["high"] < 0.5]
    level = [env_id for env_id in tasks if env_id not in above and env_id not in below]
    parts = []
    if level:
        parts.append(
            f"the 95% CI of P holds 0.5 on {_listed(level)}: no difference in learning that {JUDGED_SEEDS} seeds resolve"
        )
    if above:
        parts.append(f"it lies wholly above 0.5 on {_listed(above)}: ours learns more there")
    if below:
        parts.append(f"it lies wholly below 0.5 on {_listed(below)}: sb3-contrib's TRPO learns more there")
    return f"\nThe like-for-like grid is complete ({JUDGED_SEEDS} seeds per task for both): " + "; ".join(parts) + ".\n"


def _judged_scores_of(runs: list[dict[str, Any]]) -> np.ndarray:
    return np.array([float(run["final_eval"]["mean"]) for run in runs], dtype=np.float64)


def _publish(
    pages: list[str],
    record_sets: list[dict[str, list[dict[str, Any]]]],
    text: Callable[[str], str],
    markers: tuple[str, str],
    args: argparse.Namespace,
) -> int:
    """
    Write a generated block into pages, between their markers, unless its records may not be reported together.

    :param record_sets: the records, each set one table's (task -> runs), checked by ``refuse_to_report``
    :param text: makes the block of a page, given the page (its relative links differ between README.md and docs/)
    :param markers: the block's start and end markers
    :param args: the command line (``--allow-mixed``)
    :return: the exit code
    """
    for by_task in record_sets:
        if refuse_to_report([run for runs in by_task.values() for run in runs], args.allow_mixed):
            return 2
    for page in pages:
        block = text(page)
        replace_block(Path(page), block, *markers)
        print(block)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks report``: one subcommand per report."""
    reports = parser.add_subparsers(dest="report", required=True, metavar="REPORT")
    evaluation = reports.add_parser("evaluation", help=__doc__.strip().splitlines()[0], description=__doc__.split("\n\n")[0])
    evaluation.add_argument("--results", default=str(REPO_ROOT / "benchmarks" / "evaluation" / "results"))
    evaluation.add_argument("--out", default=None, help="write the report here (Markdown)")
    evaluation.add_argument(
        "--plots",
        default=None,
        help="folder for the plots: learning curves (IQM, 95%% CI bands) per task, the performance profile and the "
        "probabilities of improvement",
    )
    evaluation.add_argument("--allow-mixed", action="store_true", help="report stale records too")
    evaluation.add_argument(
        "--docs", "--readme", dest="docs", default=None, help="also write the per-task table into this Markdown page, between"
    )
    evaluation.add_argument("--section", default="masked", help="... its <!-- SECTION-results:start/end --> markers")
    evaluation.add_argument(
        "--summary",
        nargs="+",
        default=None,
        metavar="PAGE",
        help="write the summary of every evaluation-seed record (all results folders) into these pages, between "
        "their <!-- evaluation-summary:start/end --> markers, and stop",
    )
    evaluation.add_argument(
        "--headline",
        nargs="+",
        default=None,
        metavar="PAGE",
        help="write the MuJoCo headline (like for like, confirmation seeds, peers) into these pages, between their "
        "<!-- headline:start/end --> markers, and stop",
    )
    for name, add, handler in (
        ("robustness", tuning.add_robustness_arguments, tuning.robustness_main),
        ("carry-over", tuning.add_carry_over_arguments, tuning.carry_over_main),
    ):
        report = reports.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        add(report)
        report.set_defaults(handler=handler)


def main(args: argparse.Namespace) -> int:
    """``report evaluation``"""
    if args.headline:
        # Each column one seed role (the confirmation seeds in their own), no stale record
        columns = headline_records()
        return _publish(
            args.headline, list(columns.values()), lambda page: headline_table(columns, page), HEADLINE_MARKERS, args
        )
    if args.summary:
        merged = merged_evaluation_records()
        summary = functools.cache(lambda: evaluation_summary(merged))  # the same text on every page (no link)
        return _publish(args.summary, [merged], lambda page: summary(), SUMMARY_MARKERS, args)
    records = load_runs(args.results, "evaluation")
    flat = [record for runs in records.values() for record in runs]
    if not flat:
        print(f"no evaluation-seed records in {args.results}", file=sys.stderr)
        return 1
    if refuse_to_report(flat, args.allow_mixed):
        return 2
    text = report(records, Path(args.plots) if args.plots else None)
    if args.out:
        Path(args.out).write_text("# Results on development seeds\n\n" + text)
    if args.docs:
        start, end = f"<!-- {args.section}-results:start -->", f"<!-- {args.section}-results:end -->"
        if not write_block(Path(args.docs), tables(records), start, end):
            return 1
    print(text)
    return 0
