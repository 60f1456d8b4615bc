"""The README's generated sections are what the committed records give: no number there that a record does not back."""

from pathlib import Path

from test_benchmark_scripts import REPO_ROOT, load_script

README = (REPO_ROOT / "README.md").read_text()


def _block(start: str, end: str) -> str:
    assert start in README and end in README, f"the README has no {start} ... {end} block"
    return README.split(start, 1)[1].split(end, 1)[0]


def test_ablation_section_is_the_report_of_the_committed_records() -> None:
    ablation = load_script("ablation")
    runs = ablation.load_runs()
    summaries = {key: ablation.summarize(records) if records else {"n": 0} for key, records in runs.items()}
    text, note = ablation.readme_section(summaries)
    assert (
        _block(ablation.README_START, ablation.README_END) == "\n" + text + "\n" + note
    ), "the README's ablation section differs from the records: python scripts/ablation.py report --readme README.md"


def test_results_table_is_the_table_of_the_committed_records() -> None:
    plot_results = load_script("plot_results")
    text = plot_results.tables(plot_results.load_runs(str(REPO_ROOT / "benchmarks" / "results")))
    assert _block(plot_results.TABLE_START, plot_results.TABLE_END) == "\n" + text, (
        "the README's results table differs from the records: "
        "python scripts/plot_results.py --results benchmarks/results --plots benchmarks/plots "
        "--table benchmarks/results.md --docs README.md"
    )


def test_family_results_are_the_evaluation_report_of_the_committed_records() -> None:
    report = load_script("evaluation_report")
    start, end = "<!-- masked-results:start -->", "<!-- masked-results:end -->"
    records = report.evaluation_records(str(REPO_ROOT / "benchmarks" / "masked" / "results"))
    expected = report.per_task_table(records)
    assert _block(start, end) == "\n" + expected, (
        "the README's masked results differ from the records: "
        "python scripts/evaluation_report.py --results benchmarks/masked/results --readme README.md --section masked"
    )


def test_scripts_are_where_the_readme_says() -> None:
    for script in ("ablation.py", "plot_results.py", "evaluation_report.py", "bench_distributed.py"):
        assert (REPO_ROOT / "scripts" / script).exists()
    assert Path(REPO_ROOT / "benchmarks" / "ablation" / "results").is_dir()
