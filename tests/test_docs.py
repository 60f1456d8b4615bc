"""
The README and the documentation site cannot rot: every Python example runs, and the site builds with warnings as
errors and every internal link and image of it resolves.

The examples run as written except for one substitution, said here and in the test's id: the budget of every
``learn(N)`` / ``learn(total_timesteps=N)`` call becomes ``EXAMPLE_BUDGET`` steps, which SB3 rounds up to one whole
rollout (``n_steps * n_envs``) and one update, so that each example takes seconds.
"""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import REPO_ROOT, docs

#: the Markdown files whose ```python blocks are run: the README and every page of the site
EXAMPLE_FILES = [
    REPO_ROOT / "README.md",
    *sorted(path for path in (REPO_ROOT / "docs").rglob("*.md") if "_build" not in path.parts),
]
EXAMPLE_BUDGET = 1
LEARN_BUDGET = re.compile(r"(\.learn\(\s*(?:total_timesteps\s*=\s*)?)[0-9][0-9_]*")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_examples() -> list[tuple[str, str]]:
    """
    :return: (``file:line``, code) of every ```python block of the README and the docs
    """
    examples = []
    for path in EXAMPLE_FILES:
        text = path.read_text()
        for match in PYTHON_BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            examples.append((f"{path.relative_to(REPO_ROOT)}:{line}", match.group(1)))
    return examples


EXAMPLES = python_examples()


def test_the_readme_and_every_algorithm_page_have_examples() -> None:
    where = {name.split(":")[0] for name, _ in EXAMPLES}
    for page in ("README.md", "docs/algorithms/trpo.md", "docs/algorithms/npg.md", "docs/algorithms/maskable_trpo.md"):
        assert page in where, f"{page} has no ```python example"
    assert "docs/algorithms/recurrent_trpo.md" in where
    # the substitution finds every budget (an example that trains without learn(N) would run its full length)
    for name, code in EXAMPLES:
        if ".learn(" in code:
            assert LEARN_BUDGET.search(code), name


@pytest.mark.parametrize("name,code", EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_python_example_runs(name: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # what the example saves (models, checkpoints) lands in a temp folder
    small = LEARN_BUDGET.sub(lambda match: f"{match.group(1)}{EXAMPLE_BUDGET}", code)
    exec(compile(small, name, "exec"), {"__name__": "__docs_example__"})


def test_data_parallel_example_runs_on_two_gloo_ranks(tmp_path: Path) -> None:
    # docs/examples/train_data_parallel.py as docs/guide/data_parallel.md runs it (torchrun, 2 ranks, gloo on CPU), at
    # the smallest budget: one update of 2 x 2048 steps (with a checkpoint folder to resume from: none yet), the model
    # saved by rank 0
    example = REPO_ROOT / "docs" / "examples" / "train_data_parallel.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(example)]
    command += ["--env", "Pendulum-v1", "-n", "4096", "--checkpoint-dir", "ckpt", "--checkpoint-every", "1", "--save", "model"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 ranks, 4096 steps in all: mean_reward=" in result.stdout
    assert (tmp_path / "model.zip").is_file()


def test_link_check_finds_a_broken_link_a_missing_anchor_and_a_missing_image(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a><a href="https://example.org/x">external</a><img src="logo.png">'
        '<a href="sub/page.html#nowhere">no anchor</a><a href="missing.html">no page</a><a href="#top">self</a>'
        '<p id="top"></p><img src="sub/missing.png">'
    )
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / "sub" / "page.html").write_text('<h1 id="here">x</h1><a href="../index.html">up</a>')
    problems = docs.check_links(tmp_path)
    assert len(problems) == 3, problems
    assert any("nowhere" in problem for problem in problems)
    assert any("missing.html" in problem for problem in problems)
    assert any("missing.png" in problem for problem in problems)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("sphinx", "myst_parser", "furo"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]'")
    site = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(REPO_ROOT / "docs"), str(site)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "the docs do not build with -W:\n" + result.stderr[-5000:]
    return site


def test_site_builds_and_every_internal_link_and_image_resolves(built_site: Path) -> None:
    problems = docs.check_links(built_site)
    assert not problems, "\n".join(problems)
    for page in ("index.html", "algorithms/trpo.html", "algorithms/npg.html", "algorithms/maskable_trpo.html"):
        assert (built_site / page).is_file()
    for page in ("algorithms/recurrent_trpo.html", "results.html", "api.html", "changelog.html", "guide/rl_zoo.html"):
        assert (built_site / page).is_file()
    # the API reference is generated from the docstrings, and the changelog is CHANGELOG.md
    api = (built_site / "api.html").read_text()
    for name in ("sb3_trpo.TRPO", "sb3_trpo.NPG", "sb3_trpo.MaskableTRPO", "sb3_trpo.RecurrentTRPO"):
        assert f'id="{name}"' in api, name
    assert 'id="sb3_trpo.common.distributed.DataParallel"' in api
    assert "Trust Region Policy Optimization (TRPO)" in api
    assert "Release 0.2.0" in (built_site / "changelog.html").read_text()


def test_screenshots_of_the_main_pages_are_committed() -> None:
    for name in docs.PAGES.values():
        png = docs.SCREENSHOTS / name
        assert png.is_file(), f"{png} is missing: python -m benchmarks docs"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
def test_screenshot_writes_a_png(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><body><h1>sb3_trpo</h1></body></html>")
    docs.screenshot(page, tmp_path / "page.png", shutil.which("chromium"))
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
def test_table_widths_find_a_table_wider_than_its_column(tmp_path: Path) -> None:
    # what docs.py checks on the screenshotted pages (docs/_static/tables.css keeps the site's tables in)
    page = tmp_path / "page.html"
    page.write_text(
        '<html><body><article style="width: 300px"><table><tr><td>short</td></tr></table>'
        '<table><tr><td style="white-space: nowrap">' + "a very long cell " * 20 + "</td></tr></table></article></body></html>"
    )
    narrow, wide = docs.table_widths(page, shutil.which("chromium"))
    assert narrow[0] <= narrow[1] == 300 and wide[0] > wide[1] == 300
    assert not (tmp_path / "page.table-widths.html").exists()
