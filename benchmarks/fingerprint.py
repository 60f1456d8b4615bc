"""
The numerical fingerprint of our algorithms: what a record measured, in a few numbers; and the protocol's check of
the records a table is made of.

For each of our algorithms (:data:`benchmarks.algorithms.OURS`), a short digest of the policy's parameters after a
few updates from a fixed seed on two fixed tasks (``Algorithm.fingerprint_tasks``: Pendulum-v1 for Gaussian actions,
CartPole-v1 for categorical ones, masked or memory tasks for the family), on one torch thread: the parameters
projected on four fixed random directions per task. A record whose fingerprint differs from the current code's beyond
float tolerance (``RTOL``) measured another algorithm: it is stale. A refactor keeps the fingerprint bit for bit; a
rounding-level change (another CPU's vector kernels, a reordered sum) moves it by about 1e-6 relative and keeps the
records; a change of the update or of the collection moves it by far more::

    python -m benchmarks fingerprint                      # the current code's fingerprints, as JSON
    python -m benchmarks fingerprint --backfill FILE...   # add the fingerprint of each record's commit where it lacks one

``--backfill`` computes a fingerprint from the commit a record names (a clean one only: ``git_dirty`` false), in a
temporary git worktree of that commit, so it says what that code computed, not what today's does.

A table never mixes seed roles (tuning and evaluation seeds) nor holds stale records (:func:`record_problems`); the
reports refuse such records unless ``--allow-mixed`` (:func:`refuse_to_report`).
"""

import argparse
import fcntl
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT

# benchmarks.algorithms (sb3_trpo's registry) is imported where it is needed: --backfill runs measure() against the
# sb3_trpo of an older commit, which has no registry
N_UPDATES = 3
N_PROJECTIONS = 4
TARGET_KL = 0.2
#: relative tolerance between two fingerprints of the same algorithm (rounding-level differences are about 1e-6)
RTOL = 1e-3


def measure(class_name: str, tasks: list[str], recurrent: bool, options: dict[str, Any]) -> list[float]:
    """
    The fingerprint of one of sb3_trpo's classes, from the sb3_trpo on the path (``--backfill``: an older commit's).

    :param class_name: the class's name in sb3_trpo
    :param tasks: the two tasks
    :param recurrent: whether its policy is an LSTM one
    :param options: constructor options
    :return: ``N_PROJECTIONS`` numbers per task: the parameters after ``N_UPDATES`` updates, projected on fixed
        random unit directions
    """
    import rl_zoo3.import_envs  # noqa: F401 (registers the memory tasks)
    import torch as th

    import sb3_trpo
    import sb3_trpo.envs  # (registers the masked tasks)

    th.set_num_threads(1)
    algorithm = getattr(sb3_trpo, class_name)
    values: list[float] = []
    for env_id in tasks:
        # A radius large enough that TRPO's line search backtracks: its fingerprint then differs from NPG's
        model = algorithm(
            "MlpLstmPolicy" if recurrent else "MlpPolicy",
            env_id,
            n_steps=256,
            batch_size=64,
            target_kl=TARGET_KL,
            policy_kwargs=dict(net_arch=[16], lstm_hidden_size=8) if recurrent else dict(net_arch=[16]),
            seed=0,
            **options,
        )
        model.learn(256 * N_UPDATES)
        flat = np.concatenate([param.detach().cpu().numpy().ravel() for param in model.policy.parameters()])
        directions = np.random.RandomState(0).standard_normal((N_PROJECTIONS, flat.size))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        values += [float(value) for value in directions @ flat.astype(np.float64)]
    return values


def _spec(algo: str) -> dict[str, Any]:
    from benchmarks.algorithms import ALGORITHMS

    algorithm = ALGORITHMS[algo]
    return {
        "class_name": algorithm.entry.class_name,
        "tasks": list(algorithm.fingerprint_tasks),
        "recurrent": algorithm.recurrent,
        "options": algorithm.options,
    }


def fingerprint(algo: str) -> list[float]:
    """
    :param algo: one of ours (``benchmarks.algorithms.OURS``)
    :return: the current code's fingerprint of it (:func:`measure`)
    """
    return measure(**_spec(algo))


@functools.cache
def algorithm_fingerprint(algo: str) -> list[float] | None:
    """
    :param algo: one of ``benchmarks.algorithms.ALGORITHMS``
    :return: the current code's fingerprint of ours (computed once per process); None for the peers, whose records
        never go stale from our changes
    """
    from benchmarks.algorithms import ALGORITHMS

    return fingerprint(algo) if ALGORITHMS[algo].ours else None


def same_algorithm(recorded: list[float] | None, current: list[float]) -> bool:
    """
    :param recorded: a record's fingerprint (None: the record has none)
    :param current: the current code's
    :return: whether they agree to ``RTOL`` (relative to the fingerprint's scale), i.e. the record is not stale
    """
    if recorded is None or len(recorded) != len(current):
        return False
    scale = max(float(np.max(np.abs(current))), 1e-12)
    return bool(np.max(np.abs(np.asarray(recorded) - np.asarray(current))) <= RTOL * scale)


def is_stale(record: dict[str, Any], current: dict[str, list[float] | None]) -> bool:
    """
    :param current: the current code's fingerprint of each algorithm (None where there is none)
    :return: whether the record measured another version of our algorithm (a record made before fingerprints were
        recorded has none and is not judged here)
    """
    expected = current.get(record["algo"])
    recorded = record.get("fingerprint")
    return expected is not None and recorded is not None and not same_algorithm(recorded, expected)


def record_problems(records: list[dict[str, Any]], current: dict[str, list[float] | None]) -> list[str]:
    """
    What keeps a set of records from making one table: seed roles mixed (tuning and evaluation seeds never share a
    table), and stale records (measured by another version of our algorithm, :func:`is_stale`).

    :param records: the runs a table would be made of
    :param current: the current code's fingerprint of each algorithm
    :return: one line per problem (empty when the records may be reported together)
    """
    from benchmarks.records import seed_role

    problems = []
    roles: dict[str, list[str]] = {}
    for record in records:
        role = record.get("seed_role") or (seed_role(record["seed"]) if record["seed"] < 200 else "unassigned")
        roles.setdefault(role, []).append(f"{record['algo']} {record['env']} seed {record['seed']}")
    if len(roles) > 1:
        problems.append("seed roles mixed: " + "; ".join(f"{role}: {len(runs)} runs" for role, runs in sorted(roles.items())))
    for record in records:
        if is_stale(record, current):
            problems.append(
                f"stale: {record['algo']} {record['env']} seed {record['seed']} (commit {record.get('git_commit', '?')[:7]})"
            )
    return problems


def refuse_to_report(records: list[dict[str, Any]], allow_mixed: bool) -> bool:
    """
    Check a table's records against the protocol with the current code's fingerprints (:func:`record_problems`),
    and say why when they may not be reported together.

    :param records: the runs a table would be made of
    :param allow_mixed: report them anyway (``--allow-mixed``)
    :return: whether the caller must refuse (the problems were printed to stderr)
    """
    current = {algo: algorithm_fingerprint(algo) for algo in sorted({record["algo"] for record in records})}
    problems = record_problems(records, current)
    if problems and not allow_mixed:
        print("refusing to report (pass --allow-mixed to report anyway):\n  " + "\n  ".join(problems), file=sys.stderr)
        return True
    return False


def fingerprint_at(commit: str, algo: str) -> list[float]:
    """
    The fingerprint of ``algo`` as the code of ``commit`` computes it (in a temporary worktree of that commit).

    :param commit: a git commit of this repository
    :return: the fingerprint
    """
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO_ROOT, check=True, capture_output=True
        )
        try:
            code = f"import json; from benchmarks.fingerprint import measure; print(json.dumps(measure(**{_spec(algo)!r})))"
            # sb3_trpo from the commit; this harness, unless the commit has its own (a regular package wins over the
            # data folder benchmarks/ of an older tree)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(REPO_ROOT)])}
            output = subprocess.run(
                [sys.executable, "-c", code], env=env, cwd=folder, check=True, capture_output=True, text=True
            )
            return json.loads(output.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, check=False)


def backfill(paths: list[str]) -> int:
    """
    Add ``fingerprint`` to the records of ``paths`` that lack one, from their (clean) commit.

    :param paths: JSON-lines result files
    :return: the number of records filled
    """
    from benchmarks.algorithms import OURS

    cache: dict[tuple[str, str], list[float]] = {}
    filled = 0
    for path in paths:
        # Under the lock the grid appends with: a grid may be writing to the same file
        with open(path, "r+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            records: list[dict[str, Any]] = [json.loads(line) for line in file.read().splitlines() if line.strip()]
            for record in records:
                if record["algo"] not in OURS or record.get("fingerprint") is not None:
                    continue
                commit = record.get("git_commit")
                if not commit or commit == "unknown" or record.get("git_dirty", True):
                    continue
                key = (commit, record["algo"])
                if key not in cache:
                    cache[key] = fingerprint_at(commit, record["algo"])
                record["fingerprint"] = cache[key]
                note = f"backfilled from commit {commit[:12]} by python -m benchmarks fingerprint --backfill"
                record["fingerprint_note"] = note
                filled += 1
            file.seek(0)
            file.write("".join(json.dumps(record) + "\n" for record in records))
            file.truncate()
            fcntl.flock(file, fcntl.LOCK_UN)
    return filled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks fingerprint``."""
    parser.add_argument("--backfill", nargs="+", default=None, metavar="FILE", help="result files to complete")


def main(args: argparse.Namespace) -> int:
    from benchmarks.algorithms import OURS

    if args.backfill:
        print(f"{backfill(args.backfill)} records filled")
        return 0
    print(json.dumps({algo: fingerprint(algo) for algo in OURS}, indent=1))
    return 0
