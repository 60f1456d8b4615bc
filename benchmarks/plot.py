"""
Plot and tabulate the runs of ``python -m benchmarks run`` (``python -m benchmarks plot``).

- One PNG per environment in ``--plots``: the deterministic evaluation return against training steps, the mean over
  seeds with a +/- one std band, one line per algorithm with the RL Zoo's own entry (labelled by the algorithm alone)
  and one for ours with the ``# Tuned`` entry of ``zoo_configs/trpo.yml`` (``(ours, tuned)``, then what it changes,
  e.g. ``target_kl=0.06``). Where other candidates were run, ``candidates/<env>.png`` has every line.
- A markdown table in ``--table`` (and printed): per environment, the budget, the seeds, the final return
  (``mean +/- std`` over seeds of each seed's final evaluation mean) and the training steps per second of each algorithm.
- Stability, per algorithm and environment: the share of updates after which the mean training return (Monitor
  episodes, ``ep_rew_mean``) fell by more than 10% of the run's range (max - min of that run's curve), averaged over
  seeds, and the coefficient of variation (std / |mean|) of the final return across seeds.

Usage::

    python -m benchmarks plot --results benchmarks/results --plots benchmarks/plots --table benchmarks/results.md \\
        --docs docs/results/archive.md --summary docs/algorithms/trpo.md
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT
from benchmarks.docs import replace_block
from benchmarks.entries import by_variant, changes_from_rl_zoo, is_headline, is_tuned
from benchmarks.fingerprint import refuse_to_report
from benchmarks.records import DROP_FRACTION, load_runs, run_drop_share
from benchmarks.stats import coefficient_of_variation

TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"
#: the targets of the learning results (the RL Zoo's published numbers for sb3-contrib's TRPO; HalfCheetah-v5: 5000),
#: in the order of the summary table
TARGETS = {
    "CartPole-v1": 500.0,
    "Acrobot-v1": -83.0,
    "Pendulum-v1": -175.0,
    "MountainCarContinuous-v0": 92.0,
    "LunarLander-v3": 133.0,
    "LunarLanderContinuous-v3": 262.0,
    "HalfCheetah-v5": 5000.0,
    "Hopper-v5": 3618.0,
    "Walker2d-v5": 4933.0,
    "Swimmer-v5": 366.0,
    "Ant-v5": 4982.0,
}
#: the summary's usual number of seeds; a cell over another number says how many
SUMMARY_SEEDS = 3


def plot_env(env_id: str, runs: list[dict[str, Any]], plots: Path) -> list[Path]:
    """
    Plot the learning curves of one environment: mean over seeds +/- one std, one line per algorithm and
    hyperparameter set. ``plots/<env>.png`` has the headline lines (``is_headline``); when other candidates were
    run, ``plots/candidates/<env>.png`` has every line.

    :return: paths of the PNGs
    """
    headline = [record for record in runs if is_headline(record)]
    paths = [_plot_curves(env_id, headline or runs, plots / f"{env_id}.png")]
    if headline and len(headline) < len(runs):
        paths.append(_plot_curves(f"{env_id}, every candidate", runs, plots / "candidates" / f"{env_id}.png"))
    return paths


def _plot_curves(title: str, runs: list[dict[str, Any]], path: Path) -> Path:
    plt = pyplot()
    variants = by_variant(runs)
    # The legend goes under the axes, one line per variant
    figure, axis = plt.subplots(figsize=(7.0, 4.2 + 0.2 * len(variants)))
    if len(variants) > 10:  # more lines than the default cycle has colors
        axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for label, records in variants.items():
        mean_curve(axis, records, f"{label} ({len(records)} seeds)")
    axis.set_title(f"{title} (deterministic evaluation, mean +/- std over seeds)", fontsize=10)
    axis.set_xlabel("timesteps")
    axis.set_ylabel("evaluation return")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
    figure.tight_layout()
    save(figure, path, bbox_inches="tight")
    return path


def pyplot() -> Any:
    """:return: matplotlib's pyplot, on the Agg backend (the figures go to files), imported on first use"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Any, path: Path, **kwargs: Any) -> None:
    """Write a figure (100 dpi), its folder made if needed, and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, **kwargs)
    pyplot().close(figure)


def mean_curve(axis: Any, runs: list[dict[str, Any]], label: str) -> None:
    """
    Draw the runs' mean evaluated return along training, with a +/- one std band over them.

    :param runs: runs that share their evaluation steps (same budget, n_envs and n_steps); cut to the shortest curve
    """
    length = min(len(run["learning_curve"]) for run in runs)
    steps = np.array([point["timesteps"] for point in runs[0]["learning_curve"][:length]])
    returns = np.array([[point["mean"] for point in run["learning_curve"][:length]] for run in runs])
    mean, std = returns.mean(axis=0), returns.std(axis=0)
    (line,) = axis.plot(steps, mean, label=label)
    axis.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color())


def _budgets(runs: list[dict[str, Any]]) -> str:
    return "/".join(f"{budget:,}" for budget in sorted({record["budget"] for record in runs}))


def _seeds(runs: list[dict[str, Any]]) -> str:
    return ",".join(str(seed) for seed in sorted({record["seed"] for record in runs}))


def tables(all_runs: dict[str, list[dict[str, Any]]]) -> str:
    """
    The markdown table: one row per environment, algorithm and hyperparameter set.

    :return: markdown text
    """
    lines = [
        "Final return: deterministic evaluation of the final model, `mean +/- std` over seeds of each seed's mean "
        "return over its final-evaluation episodes. Steps/s: training steps per second (evaluation time excluded), "
        "mean over seeds, each run one process pinned to one core. Drops: share of updates after which the mean "
        f"training return fell by more than {DROP_FRACTION:.0%} of the run's range (max - min of its curve), mean over "
        "seeds. CV: coefficient of variation (std / |mean|) of the final return across seeds (2+ seeds). Algorithm: "
        "runs with the RL Zoo's own hyperparameters are named by the algorithm alone; other rows name what they change, "
        "and `(ours, tuned)` marks the `# Tuned` entry of `zoo_configs/trpo.yml`.",
        "",
        "| env | budget | algorithm | seeds | final return | steps/s | drops | CV |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for env_id in sorted(all_runs):
        for label, records in by_variant(all_runs[env_id]).items():
            finals = [record["final_eval"]["mean"] for record in records]
            shares = [run_drop_share(record) for record in records]  # from the log, or its record's summary
            cv = f"{coefficient_of_variation(finals):.3f}" if len(finals) > 1 else "-"
            row = [
                env_id,
                _budgets(records),
                label,
                _seeds(records),
                f"{np.mean(finals):.1f} +/- {np.std(finals):.1f}",
                f"{np.mean([record['steps_per_second'] for record in records]):.0f}",
                f"{np.mean(shares):.1%}",
                cv,
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _summary_cell(records: list[dict[str, Any]]) -> str:
    if not records:
        return "-"
    finals = [record["final_eval"]["mean"] for record in records]
    seeds = "" if len(records) == SUMMARY_SEEDS else f" ({len(records)} seeds)"
    return f"{np.mean(finals):.1f} +/- {np.std(finals):.1f}{seeds}"


def summary_table(all_runs: dict[str, list[dict[str, Any]]]) -> str:
    """
    The summary of the learning results: one row per task, the final return of each algorithm with the RL Zoo's own
    hyperparameters and of ours with the ``# Tuned`` entry of ``zoo_configs/trpo.yml`` where it changes them.

    :return: markdown text (the table, then a note)
    """
    lines = [
        "| task | steps | target | ours, Zoo settings | ours, tuned | sb3-contrib TRPO | SB3 PPO |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    envs = [env_id for env_id in TARGETS if env_id in all_runs] + sorted(set(all_runs) - set(TARGETS))
    for env_id in envs:
        runs = all_runs[env_id]

        def zoo_runs(algo: str, runs: list[dict[str, Any]] = runs) -> list[dict[str, Any]]:
            return [record for record in runs if record["algo"] == algo and not changes_from_rl_zoo(record)]

        tuned = [record for record in runs if is_tuned(record) and changes_from_rl_zoo(record)]
        target = TARGETS.get(env_id)
        row = [
            env_id,
            _budgets(runs),
            "-" if target is None else f"{target:g}",
            _summary_cell(zoo_runs("sb3_trpo")),
            _summary_cell(tuned),
            _summary_cell(zoo_runs("sb3_contrib")),
            _summary_cell(zoo_runs("ppo")),
        ]
        lines.append("| " + " | ".join(row) + " |")
    note = (
        "Final return of the final model: deterministic evaluation over 20 episodes, `mean +/- std` over seeds 0-2 "
        "(0-4 where a cell says 5 seeds), from the records in `benchmarks/results/`. Zoo settings: the RL Zoo's own "
        "entry for each algorithm (PPO: its `ppo.yml`, at the TRPO entry's budget). Ours, tuned: the `# Tuned` entry "
        "of `zoo_configs/trpo.yml` where it changes the Zoo's values (- where it does not). Target: each task's goal, "
        "as on the results page."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks plot``."""
    results, plots, table = (REPO_ROOT / "benchmarks" / name for name in ("results", "plots", "results.md"))
    parser.add_argument("--results", default=str(results), help="results folder (default: %(default)s)")
    parser.add_argument("--plots", default=str(plots), help="folder of the PNGs (default: %(default)s)")
    parser.add_argument("--table", default=str(table), help="markdown file of the table (default: %(default)s)")
    parser.add_argument(
        "--docs",
        default="",
        help=f"if set, a markdown file whose block between {TABLE_START} and {TABLE_END} is replaced (default: %(default)s)",
    )
    parser.add_argument(
        "--summary",
        nargs="*",
        default=[],
        help=f"markdown files whose block between {SUMMARY_START} and {SUMMARY_END} gets the summary table "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="report even when the records mix seed roles or include stale records (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    all_runs = load_runs(args.results)
    if not all_runs:
        print(f"no results in {args.results}", file=sys.stderr)
        return 1
    # The protocol: one table holds one seed role, and no record of an older version of our algorithms
    if refuse_to_report([record for runs in all_runs.values() for record in runs], args.allow_mixed):
        return 2
    for env_id, runs in sorted(all_runs.items()):
        for path in plot_env(env_id, runs, Path(args.plots)):
            print(f"wrote {path}")
    text = tables(all_runs)
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text("# Benchmark results\n\n" + text)
    if args.docs:
        replace_block(Path(args.docs), text, TABLE_START, TABLE_END)
        print(f"updated the table in {args.docs}")
    summary = summary_table(all_runs)
    for path in args.summary:
        replace_block(Path(path), summary, SUMMARY_START, SUMMARY_END)
        print(f"updated the summary in {path}")
    print(text)
    return 0
