"""
Sphinx configuration of sb3_trpo's documentation.

Built by ``make docs``: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors).
"""

import os
import sys

# The package documented is the one of this repository (its docstrings), not whichever sb3_trpo is installed
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

import sb3_trpo  # noqa: E402

project = "sb3_trpo"
author = "sb3_trpo developers"
copyright = "sb3_trpo developers"
version = release = sb3_trpo.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
# A name documented where it is re-exported (sb3_trpo.zoo.register, defined in sb3_trpo.zoo.registry) links to no
# source page: followed, viewcode would link the defining module's other names to ids of the re-exporting module
viewcode_follow_imported_members = False

# Markdown pages (MyST) and the odd reST page
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence"]
# Anchors for headings down to ### so that pages can link to sections ([text](page.md#section)), slugged as GitHub
# slugs them, so that the same links work on GitHub's rendering of these Markdown files
myst_heading_anchors = 3
myst_heading_slug_func = "github_slug.github_slug"  # docs/_ext/github_slug.py (a path: the config is cached)
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# API reference: members in source order, type hints in the description (not in the signature, which gets long)
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# sb3_trpo's docstrings follow SB3's reST template (:param x:), not Google's or NumPy's
napoleon_google_docstring = False
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"sb3_trpo {release}"
html_static_path = ["_static"]
# Wide tables wrap their long cells and scroll inside their own box, never the page (docs/_static/tables.css)
html_css_files = ["tables.css"]
# No fonts, scripts or inventories from the web: the site builds and reads offline
html_theme_options = {"navigation_with_keys": True}
