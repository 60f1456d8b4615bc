"""
Plot and tabulate the runs of ``scripts/benchmark.py``.

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

    python scripts/plot_results.py --results benchmarks/results --plots benchmarks/plots --table benchmarks/results.md \
        --docs docs/results/archive.md --summary docs/algorithms/trpo.md
"""

import argparse
import dataclasses
import functools
import importlib.util
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sb3_trpo import zoo

# scripts/ on the path, for the sibling records.py (also when this file is imported from elsewhere)
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import DROP_FRACTION, run_drop_share
from records import drop_share as drop_share  # re-exported: the drops column's definition

REPO_ROOT = Path(__file__).resolve().parent.parent
ALGO_ORDER = ("sb3_trpo", "sb3_contrib", "ppo")
ALGO_LABELS = {
    "sb3_trpo": "sb3_trpo TRPO (ours)",
    "sb3_npg": "sb3_trpo NPG (ours)",
    "sb3_contrib": "sb3-contrib TRPO",
    "ppo": "SB3 PPO",
    "sb3_trpo_mask": "sb3_trpo MaskableTRPO (ours)",
    "maskable_ppo": "sb3-contrib MaskablePPO",
    "sb3_trpo_mask_lstm": "sb3_trpo MaskableRecurrentTRPO (ours)",
    "sb3_trpo_lstm": "sb3_trpo RecurrentTRPO (ours)",
    "recurrent_ppo": "sb3-contrib RecurrentPPO",
}
#: the RL Zoo's own hyperparameter file of each algorithm (the masked and recurrent TRPOs and MaskablePPO have none)
ZOO_FILES = {"sb3_trpo": "trpo", "sb3_contrib": "trpo", "sb3_npg": "trpo", "ppo": "ppo", "recurrent_ppo": "ppo_lstm"}
#: the family's algorithms, which the RL Zoo has no file for: their runs are compared with the entry of their own file
#: in zoo_configs/ instead (a run of another candidate is a candidate, not the headline)
OWN_FILES = {"sb3_trpo_mask": "trpo_mask", "sb3_trpo_mask_lstm": "trpo_mask_lstm", "sb3_trpo_lstm": "trpo_lstm"}
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
#: the training steps at which a task is judged, and its candidates tuned, where that is before the end of its entry's
#: budget: Humanoid-v5's target is Tianshou's TRPO at 1M steps, and its entry trains for 2M
JUDGED_AT = {"Humanoid-v5": 1_000_000}


@dataclass
class Args:
    """Command-line arguments (each field's ``help`` is its ``--help`` text)."""

    results: str = dataclasses.field(default=str(REPO_ROOT / "benchmarks" / "results"), metadata={"help": "results folder"})
    plots: str = dataclasses.field(default=str(REPO_ROOT / "benchmarks" / "plots"), metadata={"help": "folder of the PNGs"})
    table: str = dataclasses.field(
        default=str(REPO_ROOT / "benchmarks" / "results.md"), metadata={"help": "markdown file of the table"}
    )
    docs: str = dataclasses.field(
        default="", metadata={"help": f"if set, a markdown file whose block between {TABLE_START} and {TABLE_END} is replaced"}
    )
    summary: list[str] = dataclasses.field(
        default_factory=list,
        metadata={"help": f"markdown files whose block between {SUMMARY_START} and {SUMMARY_END} gets the summary table"},
    )
    allow_mixed: bool = dataclasses.field(
        default=False, metadata={"help": "report even when the records mix seed roles or include stale records"}
    )


def parse_args(argv: list[str] | None = None) -> Args:
    """
    :param argv: command-line arguments (``sys.argv[1:]`` when None)
    :return: the arguments
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for arg_field in dataclasses.fields(Args):
        flag, text = "--" + arg_field.name.replace("_", "-"), f"{arg_field.metadata['help']} (default: %(default)s)"
        if isinstance(arg_field.default, bool):
            parser.add_argument(flag, dest=arg_field.name, action="store_true", help=text)
        elif arg_field.default is dataclasses.MISSING:  # a list of values (default_factory)
            parser.add_argument(flag, dest=arg_field.name, nargs="*", default=[], help=text)
        else:
            parser.add_argument(flag, dest=arg_field.name, default=arg_field.default, help=text)
    return Args(**vars(parser.parse_args(argv)))


def load_runs(results: str) -> dict[str, list[dict[str, Any]]]:
    """
    Read every ``*.jsonl`` file of the results folder. A run present twice (same algorithm, seed, budget and
    hyperparameters) counts once: its last line.

    :param results: results folder
    :return: the runs of each environment
    """
    runs: dict[str, dict[tuple, dict[str, Any]]] = defaultdict(dict)
    digest = _benchmark_script().hyperparams_digest  # the benchmark's own run identity
    for path in sorted(Path(results).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                key = (record["algo"], record["seed"], record["budget"], digest(record["hyperparams"]))
                runs[record["env"]][key] = record
    return {env_id: list(by_key.values()) for env_id, by_key in runs.items()}


@functools.cache
def _benchmark_script() -> ModuleType:
    # scripts/benchmark.py, for the RL Zoo's entries exactly as the benchmark selects them (v5 tasks: the v4 entry)
    spec = importlib.util.spec_from_file_location("benchmark", Path(__file__).resolve().with_name("benchmark.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _rl_zoo_entry(algo: str, env_id: str) -> str | None:
    # The RL Zoo's own entry of env_id (as canonical JSON), None when its file has none (or there is no file); for the
    # family's algorithms, the entry of env_id in their own file of zoo_configs/
    benchmark = _benchmark_script()
    if algo in OWN_FILES:
        own = zoo.load_config(REPO_ROOT / "zoo_configs" / f"{OWN_FILES[algo]}.yml")
        return json.dumps(benchmark._json_ready(own[env_id]), sort_keys=True) if env_id in own else None
    if algo not in ZOO_FILES:
        return None
    try:
        key, entry = benchmark.select_entry(benchmark.rl_zoo_config(ZOO_FILES[algo]), env_id)
    except ValueError:  # sb3_trpo.zoo.ConfigError: no entry
        return None
    if key not in (env_id, env_id[:-1] + "4"):  # the Zoo's fallback for tasks it has no entry for: not the Zoo's settings
        return None
    return json.dumps(benchmark._json_ready(entry), sort_keys=True)


def changes_from_rl_zoo(record: dict[str, Any]) -> dict[str, Any]:
    """
    :param record: a run
    :return: the hyperparameters whose value differs from the RL Zoo's own entry for the run's algorithm and
        environment (for the family's algorithms, ``OWN_FILES``: their own file's entry; None for a name the run
        leaves out); empty when there is no entry
    """
    zoo_json = _rl_zoo_entry(record["algo"], record["env"])
    if zoo_json is None:
        return {}
    zoo, ours = json.loads(zoo_json), record["hyperparams"]
    return {name: ours.get(name) for name in sorted(set(zoo) | set(ours)) if zoo.get(name) != ours.get(name)}


@functools.cache
def _tuned_entries() -> dict[str, dict[str, Any]]:
    # The entries of zoo_configs/trpo.yml marked `# Tuned` (as runs record them), by environment id
    path = REPO_ROOT / "zoo_configs" / "trpo.yml"
    config, marks = zoo.load_config(path), zoo.entry_marks(path)
    benchmark = _benchmark_script()
    return {
        env_id: benchmark._json_ready(entry) for env_id, entry in config.items() if marks.get(env_id, "").startswith("# Tuned")
    }


@functools.cache
def _former_entries() -> dict[str, list[dict[str, Any]]]:
    # benchmark.FORMER_ENTRIES (as runs record them), by environment id, oldest first
    benchmark = _benchmark_script()
    return {
        env_id: [benchmark._json_ready(entry) for entry in entries] for env_id, entries in benchmark.former_entries().items()
    }


def _is_entry(record: dict[str, Any], entry: dict[str, Any] | None) -> bool:
    # sb3_trpo with exactly the entry's hyperparameters (the same names as well as the same values: a candidate that
    # adds a hyperparameter, policy_kwargs say, is not the entry) at the entry's budget, or at the steps its task is
    # judged at (JUDGED_AT: Humanoid-v5's tuning runs); a run cut shorter is not the entry
    if record["algo"] != "sb3_trpo" or entry is None:
        return False
    budgets = {int(entry["n_timesteps"]), JUDGED_AT.get(record["env"])}
    return record["hyperparams"] == entry and record["budget"] in budgets


def former_generation(record: dict[str, Any]) -> int | None:
    """
    :param record: a run
    :return: which of its environment's former ``# Tuned`` entries (``benchmark.FORMER_ENTRIES``, 0 the oldest) it ran
        exactly, None for none
    """
    for generation, entry in enumerate(_former_entries().get(record["env"], [])):
        if _is_entry(record, entry):
            return generation
    return None


def is_former_entry(record: dict[str, Any]) -> bool:
    """
    :param record: a run
    :return: whether it is sb3_trpo with one of its environment's former ``# Tuned`` entries, exactly
    """
    return former_generation(record) is not None


def is_tuned(record: dict[str, Any]) -> bool:
    """
    :param record: a run
    :return: whether it is sb3_trpo with its environment's ``# Tuned`` entry of ``zoo_configs/trpo.yml`` (exactly
        the entry's hyperparameters, none added, at the entry's budget or the steps its task is judged at)
    """
    return _is_entry(record, _tuned_entries().get(record["env"]))


def variant_label(record: dict[str, Any]) -> str:
    """
    :param record: a run
    :return: its line's label: the algorithm, then what its hyperparameters change from the RL Zoo's
        (``sb3_trpo TRPO (ours), target_kl=0.06``); ``(ours, tuned)`` for a ``# Tuned`` entry that changes them,
        ``(ours, former entry)`` for a former one
    """
    changes = changes_from_rl_zoo(record)
    algo = ALGO_LABELS.get(record["algo"], record["algo"])
    if changes and is_tuned(record):
        algo = algo.replace("(ours)", "(ours, tuned)")
    elif is_former_entry(record):
        # also where the former entry is the Zoo's values: the plain "(ours)" would read as the current entry
        algo = algo.replace("(ours)", "(ours, former entry)")
    return ", ".join([algo] + [f"{name}={value}" for name, value in changes.items()])


def is_headline(record: dict[str, Any]) -> bool:
    """
    :param record: a run
    :return: whether its line belongs in the environment's main plot: an algorithm with the RL Zoo's own
        hyperparameters, or ours with its ``# Tuned`` entry or a former one (the other candidates go to
        ``candidates/``)
    """
    return not changes_from_rl_zoo(record) or is_tuned(record) or is_former_entry(record)


def by_variant(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """
    :param runs: the runs of one environment
    :return: the runs of each algorithm and hyperparameter set, keyed by ``variant_label`` (algorithms in
        ``ALGO_ORDER``, the RL Zoo's settings first), sorted by seed
    """
    grouped: dict[tuple[int, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for record in runs:
        algo = record["algo"]
        rank = ALGO_ORDER.index(algo) if algo in ALGO_ORDER else len(ALGO_ORDER)
        label = variant_label(record)
        grouped[(rank, algo, len(label), label)].append(record)
    return {key[3]: sorted(grouped[key], key=lambda record: record["seed"]) for key in sorted(grouped)}


def coefficient_of_variation(values: list[float]) -> float:
    """
    :param values: final returns of the seeds
    :return: std / |mean| (population std; NaN when the mean is 0)
    """
    mean = float(np.mean(values))
    return float(np.std(values) / abs(mean)) if mean != 0 else float("nan")


def plot_env(env_id: str, runs: list[dict[str, Any]], plots: Path) -> list[Path]:
    """
    Plot the learning curves of one environment: mean over seeds +/- one std, one line per algorithm and
    hyperparameter set. ``plots/<env>.png`` has the headline lines (``is_headline``); when other candidates were
    run, ``plots/candidates/<env>.png`` has every line.

    :param env_id: environment id
    :param runs: the runs of the environment
    :param plots: output folder
    :return: paths of the PNGs
    """
    headline = [record for record in runs if is_headline(record)]
    paths = [_plot_curves(env_id, headline or runs, plots / f"{env_id}.png")]
    if headline and len(headline) < len(runs):
        paths.append(_plot_curves(f"{env_id}, every candidate", runs, plots / "candidates" / f"{env_id}.png"))
    return paths


def _plot_curves(title: str, runs: list[dict[str, Any]], path: Path) -> Path:
    variants = by_variant(runs)
    # The legend goes under the axes, one line per variant
    figure, axis = plt.subplots(figsize=(7.0, 4.2 + 0.2 * len(variants)))
    if len(variants) > 10:  # more lines than the default cycle has colors
        axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for label, records in variants.items():
        # Seeds share their evaluation steps (same budget, n_envs and n_steps); cut to the shortest curve
        length = min(len(record["learning_curve"]) for record in records)
        steps = np.array([point["timesteps"] for point in records[0]["learning_curve"][:length]])
        returns = np.array([[point["mean"] for point in record["learning_curve"][:length]] for record in records])
        mean, std = returns.mean(axis=0), returns.std(axis=0)
        (line,) = axis.plot(steps, mean, label=f"{label} ({len(records)} seeds)")
        axis.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color())
    axis.set_title(f"{title} (deterministic evaluation, mean +/- std over seeds)", fontsize=10)
    axis.set_xlabel("timesteps")
    axis.set_ylabel("evaluation return")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def _budgets(runs: list[dict[str, Any]]) -> str:
    return "/".join(f"{budget:,}" for budget in sorted({record["budget"] for record in runs}))


def _seeds(runs: list[dict[str, Any]]) -> str:
    return ",".join(str(seed) for seed in sorted({record["seed"] for record in runs}))


def tables(all_runs: dict[str, list[dict[str, Any]]]) -> str:
    """
    The markdown table: one row per environment, algorithm and hyperparameter set.

    :param all_runs: the runs of each environment
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

    :param all_runs: the runs of each environment
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


def replace_block(path: Path, text: str, start: str = TABLE_START, end: str = TABLE_END) -> None:
    """
    Replace the text between two markers of a markdown file (by default the full table's).

    :param path: the markdown file (e.g. docs/results.md)
    :param text: the new block
    :param start: the opening marker
    :param end: the closing marker
    """
    content = path.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{path} has no {start} ... {end} block")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{text}{end}{after}")


def write_block(path: Path, text: str, start: str, end: str) -> bool:
    """
    :func:`replace_block` for a script's ``--docs`` option: a page without the markers is said on stderr.

    :return: whether the block was written
    """
    try:
        replace_block(path, text, start, end)
    except ValueError as error:
        print(error, file=sys.stderr)
        return False
    return True


def publish(text: str, page: str | None, start: str, end: str) -> int:
    """
    A report script's last step: write ``text`` into ``page`` between its markers (with ``--docs``), then print it.

    :return: the script's exit status: 0, or 1 where the page has no markers (nothing printed)
    """
    if page and not write_block(Path(page), text, start, end):
        return 1
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    all_runs = load_runs(args.results)
    if not all_runs:
        print(f"no results in {args.results}", file=sys.stderr)
        return 1
    # The protocol: one table holds one seed role, and no record of an older version of our algorithms
    benchmark = _benchmark_script()
    if benchmark.refuse_to_report([record for runs in all_runs.values() for record in runs], args.allow_mixed):
        return 2
    for env_id, runs in sorted(all_runs.items()):
        for path in plot_env(env_id, runs, Path(args.plots)):
            print(f"wrote {path}")
    text = tables(all_runs)
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text("# Benchmark results\n\n" + text)
    if args.docs:
        replace_block(Path(args.docs), text)
        print(f"updated the table in {args.docs}")
    summary = summary_table(all_runs)
    for path in args.summary:
        replace_block(Path(path), summary, SUMMARY_START, SUMMARY_END)
        print(f"updated the summary in {path}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
