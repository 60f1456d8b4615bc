"""Heading anchors slugged as GitHub slugs them, so that the docs' section links work on GitHub's rendering too."""

import re


def github_slug(heading: str) -> str:
    """
    :param heading: a heading's text
    :return: its anchor as GitHub makes it: lower case, punctuation dropped (hyphens and underscores kept), spaces
        as hyphens
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
