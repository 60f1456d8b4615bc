"""
The record of a run, one JSON line of ``<folder>/<env>.jsonl``, written by ``python -m benchmarks run`` (and
``curves run``): its identity (algorithm, env, seed, budget, hyperparameters), its provenance (seed role, commit and
dirty flag, machine, the algorithm's fingerprint, versions, command), the learning curve and the final evaluation.

Records made before 0.2.0 also hold ``updates``, one dict of the logged ``train/*`` values per update: about 98% of
the line. A compact record holds, in that list's place, ``updates_summary``: what the reports read from the log
(:func:`summarize`), so every table and plot of the docs regenerates from the tracked records alone:

- ``updates``: the number of updates logged;
- ``drop_share``: the share of updates after which the mean training return fell by more than ``fraction`` of the
  run's range (``plot``'s drops column, :func:`drop_share`);
- ``std_early``: the policy's action std logged at the update nearest ``fraction`` of the budget, and that update's
  steps (``report evaluation``'s exploration table), or None where the algorithm logs no std;
- ``cg_iterations`` and ``is_line_search_success``: the exact sum of the logged values and their count
  (``ablation``'s means over all updates of a variant's runs, :func:`mean_of`).

The log goes to ``<folder>/<env>.updates.jsonl.xz`` (one xz stream per write, so appending is concatenating), one JSON
line per run: its key (:func:`log_key`: algorithm, env, seed, budget, hyperparameters' digest, and when it finished)
and its ``updates``. The side files are git-ignored on ``main`` and published on the orphan branch ``records``.
``run`` writes records compact; ``records compact`` turns the lines of an older harness into compact records (it is
idempotent: compact lines are left as they are), and ``records attach`` puts the logs back, giving the original
lines exactly::

    python -m benchmarks records compact benchmarks/results benchmarks/evaluation/results   # folders or files
    git fetch origin records && python -m benchmarks records fetch --ref origin/records    # the logs, into the tree
    python -m benchmarks records attach benchmarks/results/Hopper-v5.jsonl > Hopper-v5.full.jsonl
    python -m benchmarks records publish                                                   # commit the logs on `records`
"""

import argparse
import fcntl
import hashlib
import json
import lzma
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT

#: the record's key of the per-update log, and of what replaces it in a compact record
UPDATES, SUMMARY = "updates", "updates_summary"
#: a drop of the mean training return counts when larger than this fraction of the run's range (``plot``'s drops)
DROP_FRACTION = 0.1
#: "early in training": this fraction of the budget (``report evaluation``'s exploration table)
EARLY = 0.2
#: the logged values whose mean over all updates of a set of runs a report shows (``ablation``)
SUMMED = ("cg_iterations", "is_line_search_success")
#: the orphan branch that holds the side files, at the same paths as on main
BRANCH = "records"
SIDE_SUFFIX = ".updates.jsonl.xz"
BRANCH_README = """# Per-update logs of the benchmark records

This orphan branch holds, for each results file `benchmarks/.../<env>.jsonl` of the `main` branch, the per-update logs
of its runs in `benchmarks/.../<env>.updates.jsonl.xz` (xz, one JSON line per run: the run's key and its `updates`).
`main` tracks the compact records (with an `updates_summary` in the log's place) and git-ignores these files:

    git fetch origin records
    python -m benchmarks records fetch --ref origin/records       # the files into the working tree of main
    python -m benchmarks records attach benchmarks/results/Hopper-v5.jsonl > Hopper-v5.full.jsonl
    git show origin/records:benchmarks/results/Hopper-v5.updates.jsonl.xz | xz -d | head -1   # or one file by hand

`python -m benchmarks records publish` adds new logs here (a commit on top of the last, never a rewrite).
"""
#: Seeds for choosing configs and seeds for publishing: never mixed (docs/results/archive.md, "Set-up")
TUNING_SEEDS = range(0, 100)
EVALUATION_SEEDS = range(100, 200)
#: Seeds that publish a tuned entry once, after the entry and the commands are committed; never used for a choice
CONFIRMATION_SEEDS = range(1000, 2000)


# ---------------------------------------------------------------------------------------------------------------------
# Provenance: the seed's role, the code, the machine
# ---------------------------------------------------------------------------------------------------------------------


def seed_role(seed: int) -> str:
    """
    :return: ``"tuning"`` (seeds 0-99: configs are chosen on them), ``"evaluation"`` (100-199: the development seeds,
        which steered which candidates were made) or ``"confirmation"`` (1000-1999: a tuned entry's one published run)
    """
    if seed in TUNING_SEEDS:
        return "tuning"
    if seed in EVALUATION_SEEDS:
        return "evaluation"
    if seed in CONFIRMATION_SEEDS:
        return "confirmation"
    raise ValueError(
        f"seed {seed} is neither a tuning seed (0-99), a development seed (100-199) nor a confirmation seed (1000-1999)"
    )


def versions() -> dict[str, str]:
    """:return: versions of python and of the packages that shape the results"""
    found = {"python": platform.python_version()}
    packages = ("torch", "stable_baselines3", "sb3_contrib", "sb3_trpo", "rl_zoo3", "gymnasium", "mujoco", "box2d", "numpy")
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def cpu_model() -> str:
    """:return: the processor's model name (from /proc/cpuinfo on Linux), else the machine type"""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """
    :return: the machine a measure was made on: the CPU's model and capability (torch's vector kernels: a run
        reproduces bit for bit only on the same ones), its cores, those this process is pinned to, the machine type
    """
    import torch as th

    return {
        "cpu": cpu_model(),
        "cpu_capability": th.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "cores_pinned": sorted(os.sched_getaffinity(0)),
        "machine": platform.machine(),
    }


def git_state() -> dict[str, Any]:
    """
    :return: the repository's commit and whether the code that shapes a run (sb3_trpo/, the harness, zoo_configs/)
        differs from it (``git_dirty``), as the run saw them
    """

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "sb3_trpo", "benchmarks/*.py", "zoo_configs"))
    return {"git_commit": commit or "unknown", "git_dirty": dirty}


def provenance(seed: int, git: dict[str, Any], fingerprint: list[float] | None, command: str) -> dict[str, Any]:
    """
    :param git: :func:`git_state` when the run started (the code it imported)
    :param fingerprint: the fingerprint of the algorithm's code (None for the peers)
    :param command: the command line that asked for the run
    :return: the fields every run's record has besides its results: the seed's role, the commit, the fingerprint,
        the versions, the machine, the command and when the run finished
    """
    return {
        "seed_role": seed_role(seed),
        **git,
        "fingerprint": fingerprint,
        "versions": versions(),
        "hardware": hardware(),
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def json_ready(value: Any) -> Any:
    """
    :param value: hyperparameters (an entry, or what the Zoo made of it)
    :return: the same as plain JSON: YAML scalars stay, anything else (classes, schedules) becomes its repr
    """
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


# ---------------------------------------------------------------------------------------------------------------------
# A run's identity, and the results files
# ---------------------------------------------------------------------------------------------------------------------


def hyperparams_digest(hyperparams: dict[str, Any]) -> str:
    """
    :param hyperparams: an entry, or hyperparameters as the records hold them
    :return: 12 hex digits of the SHA-1 of the hyperparameters as canonical JSON (same values, same digest, in any
        file): the harness's run identity
    """
    return hashlib.sha1(json.dumps(json_ready(hyperparams), sort_keys=True).encode()).hexdigest()[:12]


def run_key(algo: str, env_id: str, seed: int, budget: int, hyperparams: dict[str, Any]) -> tuple[str, str, int, int, str]:
    """
    :return: what identifies a run: algorithm, environment, seed, budget and the hyperparameters' digest (a run
        with the same values in another file counts as done; a changed entry runs again)
    """
    return (algo, env_id, seed, budget, hyperparams_digest(hyperparams))


def record_key(record: dict[str, Any]) -> tuple[str, str, int, int, str]:
    """:return: :func:`run_key` of a record"""
    return run_key(record["algo"], record["env"], record["seed"], record["budget"], record["hyperparams"])


def results_path(out: str | Path, env_id: str) -> Path:
    """:return: the JSON-lines file of ``env_id``"""
    return Path(out) / f"{env_id}.jsonl"


def read(path: Path) -> list[dict[str, Any]]:
    """:return: the records of a results file, in order (none where it is absent)"""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def load_runs(results: str | Path, role: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """
    Read every ``*.jsonl`` file of a results folder. A run present twice (same algorithm, seed, budget and
    hyperparameters) counts once: its last line.

    :param role: keep only the runs of this seed role (``tuning``, ``evaluation``, ``confirmation``); None: all
    :return: the runs of each environment (of those with a file, also where none has the role)
    """
    runs: dict[str, dict[tuple, dict[str, Any]]] = defaultdict(dict)
    for path in sorted(Path(results).glob("*.jsonl")):
        for record in read(path):
            runs[record["env"]][record_key(record)] = record
    return {
        env_id: [run for run in by_key.values() if role is None or run.get("seed_role") == role]
        for env_id, by_key in runs.items()
    }


def score_at(run: dict[str, Any], steps: int | None) -> float | None:
    """
    :param steps: training steps at which to judge it; None: the final model
    :return: the final evaluation's mean return when ``steps`` is None or the run's budget, else the evaluation along
        its learning curve at exactly ``steps`` (None when the run has none there)
    """
    if steps is None or run["budget"] == steps:
        return float(run["final_eval"]["mean"])
    points = [point["mean"] for point in run.get("learning_curve") or [] if point["timesteps"] == steps]
    return float(points[0]) if points else None


# ---------------------------------------------------------------------------------------------------------------------
# What the reports read from a log
# ---------------------------------------------------------------------------------------------------------------------


def drop_share(ep_rew_means: list[float | None], fraction: float = DROP_FRACTION) -> float:
    """
    Share of updates after which the mean training return fell by more than ``fraction`` of the curve's range.

    For the curve ``r_1..r_n`` (updates before any finished episode are left out) and ``range = max(r) - min(r)``,
    this is ``#{i : r_(i-1) - r_i > fraction * range} / (n - 1)``; 0 for a flat or too short curve.

    Example: ``drop_share([0, 10, 5, 10])`` is 1/3 (the range is 10; one drop of 5 > 1 in three updates).

    :param ep_rew_means: mean training return after each update (None before the first episode ends)
    :param fraction: the drop that counts, as a fraction of the range
    :return: the share, in [0, 1]
    """
    curve = np.array([value for value in ep_rew_means if value is not None], dtype=float)
    if len(curve) < 2:
        return 0.0
    value_range = curve.max() - curve.min()
    if value_range <= 0:
        return 0.0
    drops = -np.diff(curve) > fraction * value_range
    return float(drops.mean())


def logged_std_at(updates: list[dict[str, Any]], budget: int, fraction: float) -> tuple[int, float] | None:
    """
    :param updates: a run's per-update log (each update with ``timesteps`` and, for Gaussian policies, ``std``)
    :param fraction: a fraction of the budget
    :return: the steps of the update nearest ``fraction * budget`` among those that log a std, and its std; None
        when no update logs one
    """
    logged = [update for update in updates if update.get("std") is not None]
    if not logged:
        return None
    target = fraction * budget
    nearest = min(logged, key=lambda update: abs(update["timesteps"] - target))
    return int(nearest["timesteps"]), float(nearest["std"])


def exact_sum(values: list[float]) -> dict[str, Any]:
    """:return: ``sum`` (a float where it is exact, else the exact fraction as ``"p/q"``) and ``count``"""
    total = sum((Fraction(value) for value in values), Fraction(0))
    return {"sum": float(total) if Fraction(float(total)) == total else str(total), "count": len(values)}


def mean_of(parts: Iterable[dict[str, Any]]) -> float | None:
    """
    :param parts: :func:`exact_sum` of each run
    :return: the mean of all the values together, the float that ``statistics.mean`` gives on the concatenated values;
        None when there are none
    """
    total, count = Fraction(0), 0
    for part in parts:
        total += Fraction(part["sum"])
        count += part["count"]
    return float(total / count) if count else None


def summarize(updates: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """:return: the run's ``updates_summary`` (this module's docstring)"""
    early = logged_std_at(updates, budget, EARLY)
    return {
        "updates": len(updates),
        "drop_share": {
            "fraction": DROP_FRACTION,
            "share": drop_share([update.get("ep_rew_mean") for update in updates], DROP_FRACTION),
        },
        "std_early": None if early is None else {"fraction": EARLY, "timesteps": early[0], "std": early[1]},
        **{key: exact_sum([update[key] for update in updates if key in update]) for key in SUMMED},
    }


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """
    :param record: a run's record, compact or with its log
    :return: its ``updates_summary`` (computed from the log where the record holds it)
    :raise KeyError: for a record with neither
    """
    if record.get(UPDATES) is not None:
        return summarize(record[UPDATES], record["budget"])
    if SUMMARY not in record:
        raise KeyError(f"{record['algo']} {record['env']} seed {record['seed']}: a record without {UPDATES} or {SUMMARY}")
    return record[SUMMARY]


def _checked(part: dict[str, Any] | None, fraction: float, what: str) -> dict[str, Any] | None:
    if part is not None and part["fraction"] != fraction:
        raise ValueError(
            f"the compact record holds the {what} at {part['fraction']}, not {fraction}: fetch the per-update logs "
            "(python -m benchmarks records fetch) and attach them"
        )
    return part


def run_drop_share(record: dict[str, Any], fraction: float = DROP_FRACTION) -> float:
    """
    :param record: a run's record, compact or with its log
    :param fraction: the drop that counts (a compact record has the share at ``DROP_FRACTION`` only)
    :return: :func:`drop_share` of the run's mean training returns
    """
    if record.get(UPDATES) is not None:
        return drop_share([update.get("ep_rew_mean") for update in record[UPDATES]], fraction)
    part = _checked(summary(record)["drop_share"], fraction, "drop share")
    assert part is not None
    return float(part["share"])


def run_std_at(record: dict[str, Any], fraction: float) -> float | None:
    """
    :param record: a run's record, compact or with its log (a record with neither counts as an empty log)
    :param fraction: a fraction of the budget (a compact record has the std at ``EARLY`` only)
    :return: the action std logged at the update nearest ``fraction * budget`` steps; None without one
    """
    if record.get(UPDATES) is not None or SUMMARY not in record:
        found = logged_std_at(record.get(UPDATES) or [], record["budget"], fraction)
        return None if found is None else found[1]
    part = _checked(record[SUMMARY]["std_early"], fraction, "action std")
    return None if part is None else float(part["std"])


# ---------------------------------------------------------------------------------------------------------------------
# Compact records and side files
# ---------------------------------------------------------------------------------------------------------------------


def log_key(record: dict[str, Any]) -> dict[str, Any]:
    """
    :param record: a run's record (or a side file's line)
    :return: what matches a log to its record: the benchmark's run key (algorithm, env, seed, budget, hyperparameters'
        digest) and when the run finished (a run may be in a file twice, e.g. run again after its fingerprint changed)
    """
    digest = record["hyperparams_digest"] if "hyperparams_digest" in record else hyperparams_digest(record["hyperparams"])
    return {
        "algo": record["algo"],
        "env": record["env"],
        "seed": record["seed"],
        "budget": record["budget"],
        "hyperparams_digest": digest,
        "finished_at": record.get("finished_at"),
    }


def side_path(path: Path) -> Path:
    """
    :param path: a results file ``<env>.jsonl``
    :return: its side file of per-update logs, ``<env>.updates.jsonl.xz``
    """
    return path.with_name(path.name.removesuffix(".jsonl") + SIDE_SUFFIX)


def compact_record(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """
    :return: the compact record (``updates_summary`` where ``updates`` was, every other key in its place) and the log's
        line for the side file; a record without ``updates`` is returned as it is, with no log
    """
    if UPDATES not in record:
        return record, None
    updates = record[UPDATES]
    compact = {
        (SUMMARY if key == UPDATES else key): (summarize(updates, record["budget"]) if key == UPDATES else value)
        for key, value in record.items()
    }
    return compact, {**log_key(record), UPDATES: updates}


def attach_log(record: dict[str, Any], log: dict[str, Any]) -> dict[str, Any]:
    """
    :param record: a compact record
    :param log: its line of the side file
    :return: the record with ``updates`` in the summary's place: the line the harness wrote before 0.2.0
    """
    return {(UPDATES if key == SUMMARY else key): (log[UPDATES] if key == SUMMARY else value) for key, value in record.items()}


def read_logs(side: Path | bytes) -> list[dict[str, Any]]:
    """
    :param side: a side file (absent: no logs), or its content
    :return: its lines, in order
    """
    data = side if isinstance(side, bytes) else side.read_bytes() if side.is_file() else b""
    return [json.loads(line) for line in lzma.decompress(data).decode().splitlines() if line.strip()] if data else []


def _compressed(logs: list[dict[str, Any]]) -> bytes:
    return lzma.compress("".join(json.dumps(log) + "\n" for log in logs).encode(), preset=6)


def _write_atomically(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(file.name, path)


def append_logs(side: Path, logs: list[dict[str, Any]]) -> int:
    """
    Append logs to a side file as one more xz stream, leaving out those already in it (the same key and the same
    updates: a compaction interrupted after writing its logs and run again). The file is replaced atomically; callers
    hold the results file's lock.

    :param logs: lines of the side file
    :return: the number of lines appended
    """
    present = {json.dumps(log, sort_keys=True) for log in read_logs(side)}
    new = [log for log in logs if json.dumps(log, sort_keys=True) not in present]
    if new:
        side.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(side, (side.read_bytes() if side.is_file() else b"") + _compressed(new))
    return len(new)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """
    Append a run's record to its results file compact, its log to the side file first, under the results file's
    exclusive lock (several runs may end at once; a compaction takes the same lock).

    :param record: the run's record (with its ``updates``, or without a log)
    """
    compact, log = compact_record(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        if log is not None:
            append_logs(side_path(path), [log])
        file.write(json.dumps(compact) + "\n")
        file.flush()
        fcntl.flock(file, fcntl.LOCK_UN)


def compact_file(path: Path) -> int:
    """
    Move the logs of a results file's records into its side file and write the records compact. Idempotent: compact
    lines stay as they are. The file is rewritten in place under its lock, so a grid appending to it meanwhile waits,
    then appends to the rewritten file.

    :return: the number of records compacted
    """
    with open(path, "r+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        lines = file.read().splitlines()
        out, logs = [], []
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            compact, log = compact_record(record)
            out.append(json.dumps(compact) if log is not None else line)
            if log is not None:
                logs.append(log)
        if logs:
            append_logs(side_path(path), logs)
            file.seek(0)
            file.write("".join(line + "\n" for line in out))
            file.truncate()
            file.flush()
            os.fsync(file.fileno())
        fcntl.flock(file, fcntl.LOCK_UN)
    return len(logs)


def attached(path: Path) -> Iterator[dict[str, Any]]:
    """
    :param path: a results file, with its side file beside it
    :return: its records with their logs re-attached (records without a log in the side file, e.g. the data-parallel
        curves' records, which log none, as they are)
    :raise KeyError: for a compact record whose log is not in the side file (fetch the ``records`` branch first)
    """
    by_key: dict[str, list[dict[str, Any]]] = {}
    for log in read_logs(side_path(path)):
        by_key.setdefault(json.dumps(log_key(log), sort_keys=True), []).append(log)
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if SUMMARY in record:
                found = by_key.get(json.dumps(log_key(record), sort_keys=True))
                if not found:
                    where = f"{side_path(path)} (python -m benchmarks records fetch)"
                    raise KeyError(f"{path}: no log of {log_key(record)} in {where}")
                record = attach_log(record, found.pop(0))
            yield record


def results_files(paths: Iterable[str]) -> list[Path]:
    """
    :param paths: results files and folders (searched recursively for ``*.jsonl``)
    :return: the results files, sorted
    """
    found: set[Path] = set()
    for name in paths:
        path = Path(name)
        found.update(path.rglob("*.jsonl") if path.is_dir() else [path])
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------------------
# The `records` branch
# ---------------------------------------------------------------------------------------------------------------------


def _git(*args: str, env: dict[str, str] | None = None, data: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, input=data, capture_output=True, env={**os.environ, **(env or {})}, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr.decode().strip()}")
    return result.stdout


def _resolve(ref: str) -> str | None:
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except RuntimeError:
        return None


def _branch_files(commit: str) -> dict[str, bytes]:
    names = _git("ls-tree", "-r", "--name-only", commit).decode().splitlines()
    return {name: _git("show", f"{commit}:{name}") for name in names if name.endswith(SIDE_SUFFIX)}


def _canonical(logs: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(log, sort_keys=True) for log in logs}


def fetch(ref: str) -> int:
    """
    Write the side files of ``ref`` (the ``records`` branch) into the working tree; where a local side file has logs
    the branch lacks, they are kept (appended after the branch's).

    :param ref: the branch, e.g. ``records`` or ``origin/records`` after ``git fetch origin records``
    :return: the number of side files written
    """
    commit = _resolve(ref)
    if commit is None:
        raise RuntimeError(f"no {ref}: git fetch origin {BRANCH} first")
    written = 0
    for name, data in _branch_files(commit).items():
        local = REPO_ROOT / name
        on_branch = _canonical(read_logs(data))
        extra = [log for log in read_logs(local) if json.dumps(log, sort_keys=True) not in on_branch]
        content = data + (_compressed(extra) if extra else b"")
        if not local.is_file() or local.read_bytes() != content:
            local.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(local, content)
            written += 1
    return written


def publish(message: str) -> str | None:
    """
    Commit the working tree's side files on the ``records`` branch, on top of its last commit (git plumbing with a
    temporary index: nothing is checked out, main is not touched). A side file that lacks logs the branch has is
    refused (run ``fetch`` first).

    :return: the new commit, or None when the branch already holds these files
    """
    parent = _resolve(f"refs/heads/{BRANCH}")
    on_branch = _branch_files(parent) if parent else {}
    sides = sorted(path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "benchmarks").rglob(f"*{SIDE_SUFFIX}"))
    for name in sides:
        if name in on_branch and not _canonical(read_logs(on_branch[name])) <= _canonical(read_logs(REPO_ROOT / name)):
            raise RuntimeError(f"{name} lacks logs that the {BRANCH} branch has: python -m benchmarks records fetch first")
    with tempfile.TemporaryDirectory() as folder:
        env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        if parent:
            _git("read-tree", parent, env=env)
        readme = _git("hash-object", "-w", "--stdin", data=BRANCH_README.encode()).decode().strip()
        _git("update-index", "--add", "--cacheinfo", f"100644,{readme},README.md", env=env)
        for name in sides:
            blob = _git("hash-object", "-w", "--", name).decode().strip()
            _git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=env)
        tree = _git("write-tree", env=env).decode().strip()
    if parent and _git("rev-parse", f"{parent}^{{tree}}").decode().strip() == tree:
        return None
    commit = _git("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message).decode().strip()
    _git("update-ref", f"refs/heads/{BRANCH}", commit, parent or "0" * 40)
    return commit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks records``."""
    commands = parser.add_subparsers(dest="action", required=True)
    compact = commands.add_parser("compact", help="move the records' per-update logs into their side files")
    compact.add_argument("paths", nargs="+", help="results files, or folders searched for *.jsonl")
    attach = commands.add_parser("attach", help="print a results file's records with their logs (the original lines)")
    attach.add_argument("path")
    fetch_parser = commands.add_parser("fetch", help=f"write the side files of the {BRANCH} branch into the tree")
    fetch_parser.add_argument("--ref", default=None, help=f"default: {BRANCH}, else origin/{BRANCH}")
    publish_parser = commands.add_parser("publish", help=f"commit the tree's side files on the {BRANCH} branch")
    publish_parser.add_argument("-m", "--message", default="Per-update logs of the benchmark records")


def main(args: argparse.Namespace) -> int:
    if args.action == "compact":
        for path in results_files(args.paths):
            count = compact_file(path)
            print(f"{path}: {count} records compacted" + (f", logs in {side_path(path).name}" if count else ""))
    elif args.action == "attach":
        for record in attached(Path(args.path)):
            sys.stdout.write(json.dumps(record) + "\n")
    elif args.action == "fetch":
        ref = args.ref or (BRANCH if _resolve(f"refs/heads/{BRANCH}") else f"origin/{BRANCH}")
        print(f"{fetch(ref)} side files written from {ref}")
    else:
        commit = publish(args.message)
        print(f"{BRANCH}: {commit}" if commit else f"{BRANCH} already holds these logs")
    return 0
