"""
The numerical fingerprint of sb3_trpo's algorithms: what a result record measured, in a few numbers.

For each algorithm (TRPO, NPG, MaskableTRPO, RecurrentTRPO, MaskableRecurrentTRPO), a short digest of the policy's
parameters after a few updates from a fixed seed on two fixed tasks (Pendulum-v1 for Gaussian actions, CartPole-v1 for
categorical ones; for MaskableTRPO the masked InvalidActionsDiscrete-v0 and MaskedTaxi-v4, for RecurrentTRPO
PendulumNoVel-v1 and CartPoleNoVel-v1, for MaskableRecurrentTRPO MaskedCueMemory-v0 and MaskedTaxi-v4), on one torch
thread: the parameters projected on four fixed random directions per task. A record
whose fingerprint differs from the current code's beyond float tolerance (``RTOL``) measured another algorithm: it is
stale. A refactor keeps the fingerprint bit for bit; a rounding-level change (another CPU's vector kernels, a reordered
sum) moves it by about 1e-6 relative and keeps the records; a change of the update or of the collection moves it by far more.

    python scripts/fingerprint.py                      # the current code's fingerprints, as JSON
    python scripts/fingerprint.py --backfill FILE...   # add the fingerprint of each record's commit where it lacks one

``--backfill`` computes a fingerprint from the commit a record names (a clean one only: ``git_dirty`` false), in a
temporary git worktree of that commit, so it says what that code computed, not what today's does.
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
#: benchmark algorithm -> class name in sb3_trpo
ALGORITHMS = {
    "sb3_trpo": "TRPO",
    "sb3_npg": "NPG",
    "sb3_trpo_mask": "MaskableTRPO",
    "sb3_trpo_lstm": "RecurrentTRPO",
    "sb3_trpo_mask_lstm": "MaskableRecurrentTRPO",
    "sb3_trpo_contrib_kl": "TRPO",
}
#: constructor options of a benchmark algorithm (scripts/benchmark.py's ALGORITHM_OPTIONS)
OPTIONS = {"sb3_trpo_contrib_kl": {"kl_constraint": "sb3_contrib"}}
TASKS = ("Pendulum-v1", "CartPole-v1")
#: MaskableTRPO's tasks: masked ones (sb3_trpo.envs); RecurrentTRPO's: memory ones (rl_zoo3 registers them);
#: MaskableRecurrentTRPO's: masked ones, one of them needing memory
FAMILY_TASKS = {
    "sb3_trpo_mask": ("InvalidActionsDiscrete-v0", "MaskedTaxi-v4"),
    "sb3_trpo_lstm": ("PendulumNoVel-v1", "CartPoleNoVel-v1"),
    "sb3_trpo_mask_lstm": ("MaskedCueMemory-v0", "MaskedTaxi-v4"),
    # sb3-contrib's trust region: a 2-dimensional Box task, where it averages over the dimensions
    "sb3_trpo_contrib_kl": ("LunarLanderContinuous-v3", "CartPole-v1"),
}
N_UPDATES = 3
N_PROJECTIONS = 4
TARGET_KL = 0.2
#: relative tolerance between two fingerprints of the same algorithm (rounding-level differences are about 1e-6)
RTOL = 1e-3


def fingerprint(algo: str) -> list[float]:
    """
    :param algo: a key of ``ALGORITHMS``
    :return: ``N_PROJECTIONS`` numbers per task: the parameters after ``N_UPDATES`` updates, projected on fixed
        random unit directions
    """
    import rl_zoo3.import_envs  # noqa: F401 (registers the memory tasks)
    import torch as th

    import sb3_trpo
    import sb3_trpo.envs  # (registers the masked tasks; sb3_trpo.envs is also used above as a name)

    th.set_num_threads(1)
    algorithm = getattr(sb3_trpo, ALGORITHMS[algo])
    values: list[float] = []
    recurrent = algo in ("sb3_trpo_lstm", "sb3_trpo_mask_lstm")
    for env_id in FAMILY_TASKS.get(algo, TASKS):
        # A radius large enough that TRPO's line search backtracks: its fingerprint then differs from NPG's
        model = algorithm(
            "MlpLstmPolicy" if recurrent else "MlpPolicy",
            env_id,
            n_steps=256,
            batch_size=64,
            target_kl=TARGET_KL,
            policy_kwargs=dict(net_arch=[16], lstm_hidden_size=8) if recurrent else dict(net_arch=[16]),
            seed=0,
            **OPTIONS.get(algo, {}),
        )
        model.learn(256 * N_UPDATES)
        flat = np.concatenate([param.detach().cpu().numpy().ravel() for param in model.policy.parameters()])
        directions = np.random.RandomState(0).standard_normal((N_PROJECTIONS, flat.size))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        values += [float(value) for value in directions @ flat.astype(np.float64)]
    return values


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


def fingerprint_at(commit: str, algo: str) -> list[float]:
    """
    The fingerprint of ``algo`` as the code of ``commit`` computes it (in a temporary worktree of that commit).

    :param commit: a git commit of this repository
    :param algo: a key of ``ALGORITHMS``
    :return: the fingerprint
    """
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO_ROOT, check=True, capture_output=True
        )
        try:
            script = Path(__file__).resolve()
            code = (
                f"import json, runpy; module = runpy.run_path({str(script)!r}); "
                f"print(json.dumps(module['fingerprint']({algo!r})))"
            )
            env = {**os.environ, "PYTHONPATH": str(tree)}
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
    cache: dict[tuple[str, str], list[float]] = {}
    filled = 0
    for path in paths:
        # Under the lock benchmark.py appends with: a grid may be writing to the same file
        with open(path, "r+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            records: list[dict[str, Any]] = [json.loads(line) for line in file.read().splitlines() if line.strip()]
            for record in records:
                if record["algo"] not in ALGORITHMS or record.get("fingerprint") is not None:
                    continue
                commit = record.get("git_commit")
                if not commit or commit == "unknown" or record.get("git_dirty", True):
                    continue
                key = (commit, record["algo"])
                if key not in cache:
                    cache[key] = fingerprint_at(commit, record["algo"])
                record["fingerprint"] = cache[key]
                record["fingerprint_note"] = f"backfilled from commit {commit[:12]} by scripts/fingerprint.py --backfill"
                filled += 1
            file.seek(0)
            file.write("".join(json.dumps(record) + "\n" for record in records))
            file.truncate()
            fcntl.flock(file, fcntl.LOCK_UN)
    return filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backfill", nargs="+", default=None, metavar="FILE", help="result files to complete")
    args = parser.parse_args(argv)
    if args.backfill:
        print(f"{backfill(args.backfill)} records filled")
        return 0
    print(json.dumps({algo: fingerprint(algo) for algo in ALGORITHMS}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
