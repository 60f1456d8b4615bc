"""
Ablation of TRPO's options and NPG: TRPO with its defaults, each option alone, all options together, and NPG.

Every variant takes the environment's entry of ``zoo_configs/trpo.yml`` (budget included; where a robustness candidate
has since replaced the entry the ablation ran on, that former entry, the oldest in ``entries.FORMER_ENTRIES``, so
that the committed ablation stays the one reported) and changes only what its name says; the variants' hyperparameter
files are written to ``benchmarks/configs/ablation/`` from that entry, so each run's record names the file and values
it ran. The seeds are evaluation seeds (100-104: no config was ever chosen on them), one run per variant, env and
seed. The option values are fixed in advance (``VARIANTS``), not chosen on these seeds.

Runs go through the grid (``benchmarks.grid``: one process per core, one torch thread, resumable: finished runs are
skipped), into ``benchmarks/ablation/results/<env>.jsonl``::

    python -m benchmarks ablation run --jobs 2              # all of it (Hopper-v5's 30 runs take most of the time)
    python -m benchmarks ablation run --envs Pendulum-v1 --jobs 1 --first-core 1
    python -m benchmarks ablation report --docs docs/results/archive.md   # table (IQM with bootstrap CIs) and plot

``report`` writes ``benchmarks/ablation/ablation.md`` and ``benchmarks/ablation/ablation.png`` and, with
``--docs``, the table into that page (the docs' results page) between its ablation markers. Variants with fewer
than ``SEEDS`` finished runs are reported with their ``n`` and marked incomplete.
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from benchmarks import REPO_ROOT, entries, grid
from benchmarks.docs import replace_block
from benchmarks.fingerprint import algorithm_fingerprint, is_stale
from benchmarks.plot import pyplot, save
from benchmarks.records import hyperparams_digest, mean_of, read, results_path
from benchmarks.records import summary as log_summary
from benchmarks.stats import iqm_and_mean

ENVS = ("Pendulum-v1", "LunarLanderContinuous-v3", "Hopper-v5")
SEEDS = (100, 101, 102, 103, 104)
#: variant -> (benchmark algorithm, options added to the trpo.yml entry); values fixed before any run
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "trpo": ("sb3_trpo", {}),
    "trpo_ent_coef": ("sb3_trpo", {"ent_coef": 0.01}),
    "trpo_adaptive_kl": ("sb3_trpo", {"adaptive_kl": True}),
    "trpo_cg_warm_start": ("sb3_trpo", {"cg_warm_start": True}),
    "trpo_all_options": ("sb3_trpo", {"ent_coef": 0.01, "adaptive_kl": True, "cg_warm_start": True}),
    "npg": ("sb3_npg", {}),
}
CONFIG_DIR = REPO_ROOT / "benchmarks" / "configs" / "ablation"
OUT = REPO_ROOT / "benchmarks" / "ablation"
RESULTS = OUT / "results"
SECTION_START, SECTION_END = "<!-- ablation:start -->", "<!-- ablation:end -->"


def variant_config(variant: str) -> Path:
    """
    Write the variant's hyperparameter file: the ablation envs' entries of ``zoo_configs/trpo.yml`` plus its options.

    :return: the file's path (rewritten whenever ``zoo_configs/trpo.yml`` changes the entries)
    """
    from sb3_trpo.zoo import load_config

    base = load_config(REPO_ROOT / "zoo_configs" / "trpo.yml")
    # The oldest former entry: the one in place when the ablation ran
    base.update({env_id: former[0] for env_id, former in entries.former_entries().items()})
    _, options = VARIANTS[variant]
    header = (
        f"# Ablation variant {variant!r} (python -m benchmarks ablation writes this file): the entries of"
        f" zoo_configs/trpo.yml with {options or 'no change'}\n"
    )
    path = CONFIG_DIR / f"{variant}.yml"
    text = header + yaml.safe_dump({env_id: {**base[env_id], **options} for env_id in ENVS}, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        # Written only when it changes: running workers read these files
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def plan(envs: list[str], variants: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """:return: the specs of the runs still to do, environment-major (the short tasks first)"""
    pending: list[dict[str, Any]] = []
    for env_id in envs:
        for variant in variants:
            algo, _ = VARIANTS[variant]
            args = grid.Args(
                envs=[env_id], algos=[algo], seeds=seeds, trpo_config=str(variant_config(variant)), out=str(RESULTS)
            )
            specs, _ = grid.plan_runs(args)
            pending += specs
    return pending


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def load_runs() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """
    :return: the finished evaluation-seed runs of each (env, variant), matched on the variant's exact hyperparameters;
        records of another version of the algorithm (stale fingerprints) are left out
    """
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    current = {algo: algorithm_fingerprint(algo) for algo, _ in VARIANTS.values()}
    for env_id in ENVS:
        records = read(results_path(RESULTS, env_id))
        for variant, (algo, _) in VARIANTS.items():
            _, entry = entries.select_entry(variant_config(variant), env_id)
            digest = hyperparams_digest(entry)
            runs[(env_id, variant)] = sorted(
                (
                    record
                    for record in records
                    if record["algo"] == algo
                    and record["seed"] in SEEDS
                    and record.get("seed_role") == "evaluation"
                    and hyperparams_digest(record["hyperparams"]) == digest
                    and not is_stale(record, current)
                ),
                key=lambda record: record["seed"],
            )
    return runs


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """
    :param records: the runs of one (env, variant)
    :return: n, the interval estimates, mean +/- std, learn() wall-clock and CG iterations per update
    """
    finals = [record["final_eval"]["mean"] for record in records]
    # Means over every update of the runs, from the logs or the records' summaries (their exact sums and counts)
    cg_iterations = mean_of(log_summary(record)["cg_iterations"] for record in records)
    accepted = mean_of(log_summary(record)["is_line_search_success"] for record in records)
    return {
        "n": len(records),
        "seeds": [record["seed"] for record in records],
        **(iqm_and_mean(finals) if len(finals) >= 2 else {}),
        "mean_final": statistics.mean(finals),
        "std_final": statistics.pstdev(finals),
        "wall_clock_s": statistics.mean(record["wall_clock_s"] - record["eval_s"] for record in records),
        "cg_iterations": float("nan") if cg_iterations is None else cg_iterations,
        "line_search_success": accepted,
        "commits": sorted(
            {f"{record.get('git_commit', 'unknown')[:7]}{'+dirty' if record.get('git_dirty') else ''}" for record in records}
        ),
    }


def table(summaries: dict[tuple[str, str], dict[str, Any]]) -> str:
    """:return: the Markdown table of the ablation (one row per env and variant that has runs)"""
    lines = [
        "| env | variant | n | IQM [95% CI] | mean [95% CI] | mean +/- std | learn() s | CG iters/update | line search ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (env_id, variant), summary in summaries.items():
        if summary["n"] == 0:
            continue
        n = f"{summary['n']}" + ("" if summary["n"] == len(SEEDS) else f" of {len(SEEDS)} (incomplete)")
        if "iqm" in summary:
            iqm = f"{summary['iqm']:.1f} [{summary['iqm_low']:.1f}, {summary['iqm_high']:.1f}]"
            mean = f"{summary['mean']:.1f} [{summary['mean_low']:.1f}, {summary['mean_high']:.1f}]"
        else:
            iqm = mean = "n < 2"
        success = "-" if summary["line_search_success"] is None else f"{100 * summary['line_search_success']:.0f}%"
        lines.append(
            f"| {env_id} | {variant} | {n} | {iqm} | {mean} | {summary['mean_final']:.1f} +/- {summary['std_final']:.1f} "
            f"| {summary['wall_clock_s']:.0f} | {summary['cg_iterations']:.1f} | {success} |"
        )
    return "\n".join(lines)


def plot(
    summaries: dict[tuple[str, str], dict[str, Any]], all_runs: dict[tuple[str, str], list[dict[str, Any]]], path: Path
) -> None:
    """One panel per env: each variant's IQM with its 95% CI, and every seed's final return."""
    figure, axes = pyplot().subplots(1, len(ENVS), figsize=(5 * len(ENVS), 4), squeeze=False)
    for axis, env_id in zip(axes[0], ENVS, strict=True):
        for position, variant in enumerate(VARIANTS):
            summary = summaries[(env_id, variant)]
            if summary["n"] == 0:
                continue
            if "iqm" in summary:
                low, high = summary["iqm"] - summary["iqm_low"], summary["iqm_high"] - summary["iqm"]
                axis.errorbar([position], [summary["iqm"]], yerr=[[low], [high]], fmt="o", capsize=4, color="C0")
            runs = all_runs[(env_id, variant)]
            axis.scatter([position] * len(runs), [run["final_eval"]["mean"] for run in runs], s=10, color="gray", alpha=0.6)
        axis.set_xticks(range(len(VARIANTS)), list(VARIANTS), rotation=30, ha="right")
        finished = sum(summaries[(env_id, variant)]["n"] for variant in VARIANTS)
        axis.set_title(f"{env_id} (seeds {SEEDS[0]}-{SEEDS[-1]})" + ("" if finished else ": no finished run yet"))
        axis.set_ylabel("final return (IQM, 95% CI; dots: seeds)")
    figure.tight_layout()
    save(figure, path)


def docs_section(summaries: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, str]:
    """
    :param summaries: the summary of each (task, variant)
    :return: the table and the note under it, as the docs' ablation section (docs/results/archive.md) holds them
    """
    commits = sorted({commit for summary in summaries.values() for commit in summary.get("commits", [])})
    note = (
        f"\nDevelopment seeds {SEEDS[0]}-{SEEDS[-1]}, final deterministic return over 20 episodes at the trpo.yml entry's "
        f"budget; learn() s excludes the periodic evaluations. Records: `benchmarks/ablation/results/` (commits "
        f"{', '.join(commits) or 'none'}). Regenerate: `python -m benchmarks ablation report --docs "
        "docs/results/archive.md`.\n"
    )
    return table(summaries), note


def report(docs: str | None) -> str:
    """
    Write the ablation's table and plot (and the docs' ablation section, when asked).

    :param docs: path of the Markdown page to update between its markers (docs/results/archive.md), or None
    :return: the table
    """
    runs = load_runs()
    summaries = {key: summarize(records) if records else {"n": 0} for key, records in runs.items()}
    text, note = docs_section(summaries)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ablation.md").write_text("# Ablation of TRPO's options and NPG\n\n" + text + "\n" + note)
    (OUT / "summary.json").write_text(json.dumps({f"{env}/{variant}": s for (env, variant), s in summaries.items()}, indent=1))
    plot(summaries, runs, OUT / "ablation.png")
    if docs is not None:
        replace_block(Path(docs), text + "\n" + note, SECTION_START, SECTION_END)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks ablation``."""
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser("run", help="run the missing ablation runs")
    run.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    run.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    run.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), choices=SEEDS)
    run.add_argument("--jobs", type=int, default=1)
    run.add_argument("--first-core", type=int, default=0)
    run.add_argument("--dry-run", action="store_true")
    show = commands.add_parser("report", help="write the table and plot from the finished runs")
    show.add_argument(
        "--docs", "--readme", dest="docs", default=None, help="also write the table into this page between its markers"
    )


def main(args: argparse.Namespace) -> int:
    if args.action == "report":
        print(report(args.docs))
        return 0
    pending = plan(args.envs, args.variants, args.seeds)
    print(f"{len(pending)} ablation runs to do (results in {RESULTS})", flush=True)
    return 1 if grid.execute_runs(pending, args.jobs, args.first_core, args.command_line, args.dry_run) else 0
