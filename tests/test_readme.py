"""
The generated sections of the README and of the docs are what the committed records give: no number there that a
record does not back. Each section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers and is
written by the command named in its failure message.
"""

import functools
import json
from pathlib import Path

import pytest

from benchmarks import REPO_ROOT, ablation, curves, plot, report, tuning
from benchmarks.bench import recurrent
from benchmarks.fingerprint import refuse_to_report
from benchmarks.records import load_runs

RESULTS_PAGE = REPO_ROOT / "docs" / "results.md"
#: what results.md no longer shows (former entries, candidates, the carry-over audit, the tuning grid, the ablation's
#: table, the speed details), its blocks still checked against the records
ARCHIVE_PAGE = REPO_ROOT / "docs" / "results" / "archive.md"
#: the pages holding the README's MuJoCo headline (the README, the results page, TRPO's page), each with its links
#: relative to its own folder
HEADLINE_FILES = ("README.md", "docs/results.md", "docs/algorithms/trpo.md")
#: the files holding the summary of the tuning-seed runs (TRPO's page)
SUMMARY_FILES = ("docs/algorithms/trpo.md",)
#: the files holding the summary of every evaluation-seed result (the docs' landing page, the results page, TRPO's page)
EVALUATION_SUMMARY_FILES = ("docs/index.md", "docs/results.md", "docs/algorithms/trpo.md")


def _block(path: Path, start: str, end: str) -> str:
    text = path.read_text()
    assert start in text and end in text, f"{path.relative_to(REPO_ROOT)} has no {start} ... {end} block"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_ablation_section_is_the_report_of_the_committed_records() -> None:
    runs = ablation.load_runs()
    summaries = {key: ablation.summarize(records) if records else {"n": 0} for key, records in runs.items()}
    text, note = ablation.docs_section(summaries)
    assert _block(ARCHIVE_PAGE, ablation.SECTION_START, ablation.SECTION_END) == "\n" + text + "\n" + note, (
        "docs/results/archive.md's ablation section differs from the records: "
        "python -m benchmarks ablation report --docs docs/results/archive.md"
    )


def test_results_table_is_the_table_of_the_committed_records() -> None:
    text = plot.tables(load_runs(str(REPO_ROOT / "benchmarks" / "results")))
    assert _block(ARCHIVE_PAGE, plot.TABLE_START, plot.TABLE_END) == "\n" + text, (
        "docs/results/archive.md's results table differs from the records: "
        "python -m benchmarks plot --results benchmarks/results --plots benchmarks/plots "
        "--table benchmarks/results.md --docs docs/results/archive.md"
    )


@pytest.mark.parametrize("relative_path", SUMMARY_FILES)
def test_summary_table_is_the_summary_of_the_committed_records(relative_path: str) -> None:
    text = plot.summary_table(load_runs(str(REPO_ROOT / "benchmarks" / "results")))
    assert (
        _block(REPO_ROOT / relative_path, plot.SUMMARY_START, plot.SUMMARY_END) == "\n" + text
    ), f"{relative_path}'s summary table differs from the records: " "python -m benchmarks plot --summary " + " ".join(
        SUMMARY_FILES
    )


@functools.cache
def _evaluation_summary() -> str:
    # Computed once for the pages that hold it (its bootstrap CIs take a while)
    records = report.merged_evaluation_records()
    assert all(run["seed_role"] == "evaluation" for runs in records.values() for run in runs)
    return str(report.evaluation_summary(records))


@pytest.mark.parametrize("relative_path", EVALUATION_SUMMARY_FILES)
def test_evaluation_summary_is_the_summary_of_the_committed_evaluation_records(relative_path: str) -> None:
    text = _evaluation_summary()
    assert _block(REPO_ROOT / relative_path, report.SUMMARY_START, report.SUMMARY_END) == "\n" + text, (
        f"{relative_path}'s evaluation summary differs from the records: "
        "python -m benchmarks report evaluation --summary " + " ".join(EVALUATION_SUMMARY_FILES)
    )


def test_readme_publishes_no_tuning_seed_table() -> None:
    # The README's only results table is the evaluation-seed summary (tuning seeds chose the configs: not results)
    readme = (REPO_ROOT / "README.md").read_text()
    assert plot.SUMMARY_START not in readme and plot.TABLE_START not in readme
    assert readme.count("| task |") == 1


def test_summary_rows_agree_with_the_full_table() -> None:
    # Every cell of the summary is a row of the full table: the same records, grouped the same way
    full = plot.tables(load_runs(str(REPO_ROOT / "benchmarks" / "results")))
    summary = plot.summary_table(load_runs(str(REPO_ROOT / "benchmarks" / "results")))
    for row in summary.splitlines()[2:]:
        if not row.startswith("| "):
            break
        env_id, _, _, *cells = [cell.strip() for cell in row.strip("|").split("|")]
        for cell in cells:
            if cell != "-":
                value = cell.split(" (")[0]
                assert any(line.startswith(f"| {env_id} |") and f"| {value} |" in line for line in full.splitlines()), (
                    env_id,
                    cell,
                )


@pytest.mark.parametrize(
    "section,page",
    [("evaluation", "docs/results/archive.md"), ("masked", "docs/results.md"), ("recurrent", "docs/results.md")],
)
def test_family_results_are_the_evaluation_report_of_the_committed_records(section: str, page: str) -> None:
    # every entry of ours on the evaluation seeds, former ones included, in the archive; the families' current results
    # on the results page
    start, end = f"<!-- {section}-results:start -->", f"<!-- {section}-results:end -->"
    records = load_runs(str(REPO_ROOT / "benchmarks" / section / "results"), "evaluation")
    expected = report.tables(records)
    assert _block(REPO_ROOT / page, start, end) == "\n" + expected, (
        f"{page}'s {section} results differ from the records: python -m benchmarks report evaluation "
        f"--results benchmarks/{section}/results --docs {page} --section {section}"
    )


def test_readme_is_short_and_keeps_its_set_up_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "the README is a two-minute read: move the details into docs/"
    # .ci/run runs "the README's test command"
    assert 'python -m pytest -m "not expensive" -n 2 tests' in readme
    assert 'pip install "torch==2.13.0" -e ".[extra,tests,envpool,tuning]"' in readme


def test_carry_over_table_is_the_report_of_the_committed_records() -> None:
    # the archive's audit of the rule (each replacement of an entry: tuning seeds against evaluation seeds)
    tuning_records = tuning.tuning_records(str(REPO_ROOT / "benchmarks" / "robustness"))
    evaluation = load_runs(str(REPO_ROOT / "benchmarks" / "evaluation" / "results"), "evaluation")
    table = tuning.carry_over_table(tuning.replacements(tuning_records, evaluation))
    assert _block(ARCHIVE_PAGE, *tuning.CARRY_OVER_MARKERS) == "\n" + table, (
        "docs/results/archive.md's carry-over table differs from the records: "
        "python -m benchmarks report carry-over --docs docs/results/archive.md"
    )


def test_commands_are_where_the_docs_say() -> None:
    # the modules of `python -m benchmarks ablation`, `plot`, `report evaluation`, `report robustness`,
    # `report carry-over`, `bench distributed` and `docs`
    for module in (
        "ablation.py",
        "plot.py",
        "report.py",
        "tuning.py",
        "tuning.py",
        "bench/distributed.py",
        "docs.py",
    ):
        assert (REPO_ROOT / "benchmarks" / module).exists()
    assert Path(REPO_ROOT / "benchmarks" / "ablation" / "results").is_dir()


def test_distributed_curves_section_is_the_report_of_the_committed_records() -> None:
    records = curves.load_records(curves.DEFAULT_OUT)
    assert records and all(record["seed_role"] == "evaluation" for record in records)
    page = REPO_ROOT / "docs" / "guide" / "data_parallel.md"
    assert _block(page, curves.SECTION_START, curves.SECTION_END) == "\n" + curves.report_table(records), (
        "docs/guide/data_parallel.md's curves differ from the records: python -m benchmarks curves report "
        "--plot benchmarks/distributed/curves.png --docs docs/guide/data_parallel.md"
    )


def test_distributed_speed_figures_quote_the_records() -> None:
    page = (REPO_ROOT / "docs" / "guide" / "data_parallel.md").read_text()
    rows = {"bench_distributed.json": "| the rollout's length", "bench_distributed_split_n_envs.json": "| the envs"}
    for name, row_start in rows.items():
        record = json.loads((REPO_ROOT / "benchmarks" / "distributed" / name).read_text())
        row = next(line for line in page.splitlines() if line.startswith(row_start))
        rates, speedups = record["median_steps_per_second"], record["speedup"]
        ceiling, ceiling_speedup = record["median_steps_per_second_independent"], record["ceiling_speedup"]
        for text in (
            f"{rates['1']:.0f}",
            f"{rates['2']:.0f} (x{speedups['2']:.2f})",
            f"{ceiling['2']:.0f} (x{ceiling_speedup['2']:.2f})",
        ):
            assert f"| {text}" in row, (name, text)
    # The seconds per update quoted for the first row
    parts = json.loads((REPO_ROOT / "benchmarks" / "distributed" / "bench_distributed.json").read_text())
    one, two = parts["seconds_per_update_rank_0"]["1"], parts["seconds_per_update_rank_0"]["2"]
    prose = " ".join(page.split())
    for key, label in (("collect_rollouts", "collection"), ("train", "whole update"), ("critic", "critic's regression")):
        assert f"{label} {one[key]:.3f} / {two[key]:.3f}" in prose, key
    assert f"collectives - / {two['collectives']:.3f}" in prose


def test_throughput_bounds_quote_the_records() -> None:
    # the archive's bounds on learn() (issue 21), recomputed from benchmarks/bench_learn.json and
    # benchmarks/bench_rollout_parts.json: per env step, learn() = 1 / ours, env = 1 / env alone, train() = its share
    page = ARCHIVE_PAGE.read_text().splitlines()
    learn = json.loads((REPO_ROOT / "benchmarks" / "bench_learn.json").read_text())
    parts = json.loads((REPO_ROOT / "benchmarks" / "bench_rollout_parts.json").read_text())["microseconds_per_call"]
    goals = {"HalfCheetah-v5": 0.65, "Hopper-v5": 0.75}
    for env_id, goal in goals.items():
        rates = learn["median_steps_per_s"][env_id]
        share = sorted(learn["train_share"][env_id]["ours"])[1]  # the median of 3 rounds
        learn_us, env_us = 1e6 / rates["ours"], 1e6 / rates["env_alone"]
        train_us = share * learn_us
        allowed = env_us / goal - env_us - train_us
        contrib_allowed = 1e6 / (2.5 * rates["sb3_contrib"]) - env_us - train_us
        contrib_cell = f"{contrib_allowed:.0f} us" if contrib_allowed > 0 else "none (env + train() alone exceed it)"
        bounds_row = next(line for line in page if line.startswith(f"| {env_id} | {learn_us:.0f} us"))
        expected = (
            f"| {env_id} | {learn_us:.0f} us | {env_us:.0f} us | {train_us:.0f} us | "
            f"{learn_us - env_us - train_us:.0f} us | {env_us / (env_us + train_us):.2f} of env alone | "
            f"{allowed:.0f} us | {contrib_cell} |"
        )
        assert bounds_row == expected
        by = parts[env_id]
        per_env_step = (by["numpy_forward"] + by["callbacks"]) / by["n_envs"]
        parts_row = (
            f"| {env_id} | {by['numpy_forward']:.1f} us | {by['torch_randn']:.1f} us | {by['callbacks']:.1f} us | "
            f"{per_env_step:.0f} us |"
        )
        assert parts_row in page
        assert per_env_step > allowed, "the docs say the forward and the callbacks alone exceed the allowance"


def test_recurrent_speed_table_is_the_committed_record() -> None:
    # docs/results.md's RecurrentTRPO timing (one LSTM call against sb3-contrib's loop) from benchmarks/bench_recurrent.json
    record = json.loads((REPO_ROOT / "benchmarks" / "bench_recurrent.json").read_text())
    expected = recurrent.markdown_table(record["results"])
    assert _block(RESULTS_PAGE, "<!-- bench-recurrent:start -->", "<!-- bench-recurrent:end -->") == "\n" + expected
    assert all(result["speedup"] > 1 and result["max_param_diff"] < 1e-5 for result in record["results"])
    assert record["git_commit"] != "unknown" and record["hardware"]["cpu_capability"]


def test_robustness_table_is_the_report_of_the_committed_records() -> None:
    # the archive's robustness table (candidates against the entry on tuning seeds) from benchmarks/robustness/
    records = tuning.tuning_records(str(REPO_ROOT / "benchmarks" / "robustness"))
    assert _block(ARCHIVE_PAGE, *tuning.ROBUSTNESS_MARKERS) == "\n" + tuning.robustness_table(records), (
        "docs/results/archive.md's robustness table differs from the records: "
        "python -m benchmarks report robustness --results benchmarks/robustness --docs docs/results/archive.md"
    )


@pytest.mark.parametrize("relative_path", HEADLINE_FILES)
def test_readme_headline_is_the_headline_of_the_committed_records(relative_path: str) -> None:
    # The README's one results table, repeated on the results page: ours like for like, ours tuned on confirmation
    # seeds, the peers; every cell from the records, each column checked for stale records, the links relative to the
    # page's own folder (from docs/, the reproducing guide's section on the headline instead of benchmarks/'s README)
    page = REPO_ROOT / relative_path
    for link in report.headline_links(page):
        assert (page.parent / link.split("#")[0]).is_file(), (relative_path, link)
    text = report.headline_table(report.headline_records(), page)
    start, end = report.HEADLINE_START, report.HEADLINE_END
    assert (
        _block(page, start, end).strip() == text.strip()
    ), f"{relative_path}'s headline differs from the records: python -m benchmarks report evaluation --headline " + " ".join(
        HEADLINE_FILES
    )
    for by_task in report.headline_records().values():
        assert not refuse_to_report([run for runs in by_task.values() for run in runs], False)


def test_results_page_holds_what_is_current_and_links_its_archive() -> None:
    # issue 54: the results page at most 350 lines (the rest in docs/results/archive.md, in the toctree under it), the
    # commands of reproducing.md at most about 150
    results = RESULTS_PAGE.read_text()
    assert len(results.splitlines()) <= 350, "docs/results.md holds what is current: move the rest to the archive"
    assert "(results/archive.md)" in results and "results/archive" in results.split("```{toctree}")[1].split("```")[0]
    assert ARCHIVE_PAGE.is_file()
    reproducing = REPO_ROOT / "docs" / "guide" / "reproducing.md"
    assert len(reproducing.read_text().splitlines()) <= 160, "docs/guide/reproducing.md holds the commands"
