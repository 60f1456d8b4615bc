"""
Build the documentation site, check that it holds together, and look at it as a reader would.

1. ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors);
2. every internal link (``href``) and image (``src``) of every built HTML page must resolve: to an existing file, and
   for a link with a ``#fragment``, to an element with that ``id`` in the target page;
3. the landing page and the TRPO page, opened in headless Chromium (Debian's ``chromium`` package), are saved as
   PNG screenshots in ``docs/_static/screenshots/`` (committed, so that a change of the site's look shows in review).

Usage::

    python scripts/docs_screenshots.py                          # all three
    python scripts/docs_screenshots.py --no-build --no-screenshots   # the link check of an existing build (make docs)
"""

import argparse
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"
BUILD = DOCS / "_build" / "html"
SCREENSHOTS = DOCS / "_static" / "screenshots"
#: the pages screenshotted: built HTML page -> PNG name
PAGES = {"index.html": "index.png", "algorithms/trpo.html": "trpo.png"}
WINDOW = (1280, 1600)


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


def screenshot(page: Path, png: Path, chromium: str) -> None:
    """
    Save a screenshot of one page as a reader's browser shows it.

    :param page: a built HTML page
    :param png: the PNG to write
    :param chromium: the Chromium binary
    """
    png.parent.mkdir(parents=True, exist_ok=True)
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot of {page}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default=str(BUILD), help="the built site (default: %(default)s)")
    parser.add_argument("--no-build", action="store_true", help="check an existing build instead of building")
    parser.add_argument("--no-screenshots", action="store_true", help="build and check only")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", default=str(SCREENSHOTS), help="folder of the screenshots (default: %(default)s)")
    args = parser.parse_args(argv)
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
        for page, name in PAGES.items():
            screenshot(site / page, Path(args.out) / name, args.chromium)
            print(f"wrote {Path(args.out) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
