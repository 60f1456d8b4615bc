"""
The benchmark harness of sb3_trpo: the grids, the records, the reports, the plots and the timings behind the results
in the docs, as one package with one command line, ``python -m benchmarks COMMAND`` (``--help`` lists the commands).

It lives beside what it writes (the records ``benchmarks/*/results/*.jsonl``, the configs, the plots) and is not part
of the wheel. Before 0.2.0 the same code was ``scripts/*.py``: ``python scripts/X.py ARGS`` is now
``python -m benchmarks COMMAND ARGS`` with the same arguments (docs/guide/reproducing.md has the table).
"""

from pathlib import Path

#: the repository's root: the harness's default paths (zoo_configs/, benchmarks/, docs/) are relative to it
REPO_ROOT = Path(__file__).resolve().parent.parent
