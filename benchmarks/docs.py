"""
The docs: the generated blocks of its pages, and the site as a reader sees it.

Each generated block of a Markdown page sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers and is
rewritten by the command that makes it (:func:`replace_block`). ``python -m benchmarks docs``:

1. ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors);
2. every internal link (``href``) and image (``src``) of every built HTML page must resolve: to an existing file, and
   for a link with a ``#fragment``, to an element with that ``id`` in the target page;
3. the landing page, the results page and the TRPO page, opened in headless Chromium (Debian's ``chromium`` package),
   are saved as PNG screenshots in ``docs/_static/screenshots/`` (committed, so that a change of the site's look shows
   in review; the results page down to its widest tables), and no table of theirs may be wider than the content column
   (``table_widths``: docs/_static/tables.css wraps their cells; a wider table would hide columns behind a scroll bar).

Usage::

    python -m benchmarks docs                                  # all three (and the tables' widths)
    python -m benchmarks docs --no-build --no-screenshots      # the link check of an existing build (make docs)
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from benchmarks import REPO_ROOT

DOCS = REPO_ROOT / "docs"
BUILD = DOCS / "_build" / "html"
SCREENSHOTS = DOCS / "_static" / "screenshots"
#: the pages screenshotted: built HTML page -> PNG name
PAGES = {"index.html": "index.png", "results.html": "results.png", "algorithms/trpo.html": "trpo.png"}
WINDOW = (1280, 1600)
#: pages screenshotted taller than their first screen: page -> window height (px); the results page down to its
#: widest tables (the headline and the summary of every task)
TALL = {"results.html": 4800}
#: run in the page once loaded: each table's width and its content column's, into <pre id="table-widths">
_WIDTHS_SCRIPT = """<script>window.addEventListener("load", function () {
  var widths = [];
  document.querySelectorAll("article table").forEach(function (table) {
    widths.push([Math.round(table.getBoundingClientRect().width),
                 Math.round(table.closest("article").getBoundingClientRect().width)]);
  });
  var out = document.createElement("pre");
  out.id = "table-widths";
  out.textContent = JSON.stringify(widths);
  document.body.appendChild(out);
});</script>"""


def replace_block(path: Path, text: str, start: str, end: str) -> None:
    """
    Replace the text between two markers of a Markdown page.

    :raise ValueError: when the page lacks either marker
    """
    content = path.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{path} has no {start} ... {end} block")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{text}{end}{after}")


def write_block(path: Path, text: str, start: str, end: str) -> bool:
    """
    :func:`replace_block` for a report's ``--docs`` option: a page without the markers is said on stderr.

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
    A report's last step: write ``text`` into ``page`` between its markers (when a page is given), then print it.

    :return: the command's exit status: 0, or 1 where the page has no markers (nothing printed)
    """
    if page and not write_block(Path(page), text, start, end):
        return 1
    print(text)
    return 0


def build(out: Path = BUILD) -> None:
    """
    Build the site with warnings as errors.

    :param out: output folder of the HTML
    """
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)]
    subprocess.run(command, check=True, cwd=REPO_ROOT)


class _PageParser(HTMLParser):
    """The ids of a page, and the URLs of its links and images."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []  # (attribute, URL)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name") and (name == "id" or tag == "a"):
                self.ids.add(value)
            elif name == "href" and tag in ("a", "link", "use", "area"):
                self.urls.append((name, value))
            elif name == "src" and tag in ("img", "script", "iframe", "source"):
                self.urls.append((name, value))


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def check_links(site: Path = BUILD) -> list[str]:
    """
    :param site: folder of a built HTML site
    :return: one line per internal link or image that does not resolve (empty when all do)
    """
    pages = {path: _parse(path) for path in sorted(site.rglob("*.html"))}
    if not pages:
        return [f"no HTML page in {site}"]
    problems = []
    for page, parsed in pages.items():
        for attribute, url in parsed.urls:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//"):  # external (http, https, mailto, data, ...): not checked here
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if parts.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site)}: {attribute}={url!r}"
            if not target.is_file():
                problems.append(f"{where}: no such file")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    problems.append(f"{where}: no element with id {fragment!r} in {target.relative_to(site)}")
    return problems


def screenshot(page: Path, png: Path, chromium: str, height: int = WINDOW[1]) -> None:
    """
    Save a screenshot of one page as a reader's browser shows it.

    :param page: a built HTML page
    :param png: the PNG to write
    :param chromium: the Chromium binary
    :param height: the window's height: the first screen (default) or, taller, the whole page
    """
    png.parent.mkdir(parents=True, exist_ok=True)
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{height}",
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot of {page}")


def table_widths(page: Path, chromium: str) -> list[tuple[int, int]]:
    """
    Measure, as Chromium lays the page out in the screenshots' window, how wide each table of its content is.

    :param page: a built HTML page (a copy of it with a measuring script is opened beside it, then removed)
    :param chromium: the Chromium binary
    :return: (table width, content column width) in pixels, per table of the page's ``<article>``
    """
    probe = page.with_name(f"{page.stem}.table-widths.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _WIDTHS_SCRIPT + "</body>"), encoding="utf-8")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    try:
        dom = subprocess.run(
            [*command, "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="table-widths">(.*?)</pre>', dom, re.DOTALL)
    if found is None:
        raise RuntimeError(f"Chromium did not measure the tables of {page}")
    return [(table, column) for table, column in json.loads(found.group(1))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks docs``."""
    parser.add_argument("--site", default=str(BUILD), help="the built site (default: %(default)s)")
    parser.add_argument("--no-build", action="store_true", help="check an existing build instead of building")
    parser.add_argument("--no-screenshots", action="store_true", help="build and check only")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", default=str(SCREENSHOTS), help="folder of the screenshots (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    site = Path(args.site)
    if not args.no_build:
        build(site)
    problems = check_links(site)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} internal links or images do not resolve", file=sys.stderr)
        return 1
    print(f"every internal link and image of {len(list(site.rglob('*.html')))} pages resolves")
    if not args.no_screenshots:
        if not Path(args.chromium).is_file():
            print(f"no Chromium at {args.chromium} (apt-get install chromium)", file=sys.stderr)
            return 1
        wide = []
        for page, name in PAGES.items():
            screenshot(site / page, Path(args.out) / name, args.chromium, TALL.get(page, WINDOW[1]))
            print(f"wrote {Path(args.out) / name}")
            widths = table_widths(site / page, args.chromium)
            wide += [
                f"{page}: table {i} is {table} px wide, its column {column} px"
                for i, (table, column) in enumerate(widths)
                if table > column
            ]
        for line in wide:
            print(line, file=sys.stderr)
        if wide:
            return 1
        print(f"no table wider than the content column on {', '.join(PAGES)}")
    return 0
