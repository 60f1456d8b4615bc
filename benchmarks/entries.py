"""
Hyperparameter entries (the RL Zoo's schema: one entry per task): the entry a run takes, and what a run's entry is.

- :func:`select_entry` picks a task's entry the way the Zoo does, with an explicit MuJoCo ``-v5`` -> ``-v4`` fallback
  (the Zoo's ppo.yml and trpo.yml have v4 entries only); ``rl_zoo`` stands for the Zoo's own file.
- A run is labeled by what its hyperparameters change from the RL Zoo's own entry for its algorithm and task
  (:func:`variant_label`, ``sb3_trpo TRPO (ours), target_kl=0.06``); ``(ours, tuned)`` is the ``# Tuned`` entry of
  ``zoo_configs/trpo.yml``, ``(ours, former entry)`` one it replaced (``benchmarks/configs/former_entries*.yml``).
- The headline of a task (:func:`is_headline`) is each algorithm with the Zoo's settings and ours with its tuned or
  former entries; every other run is a candidate.
"""

import copy
import functools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT
from benchmarks.algorithms import ALGORITHMS
from benchmarks.records import json_ready

#: a ``--*-config`` value that stands for the RL Zoo's own hyperparams/<algo>.yml
RL_ZOO = "rl_zoo"
#: the tables' order of the algorithms with the Zoo's settings (ours first); the others after them
ALGO_ORDER = ("sb3_trpo", "sb3_contrib", "ppo")
#: the training steps at which a task is judged, and its candidates tuned, where that is before the end of its entry's
#: budget: Humanoid-v5's target is Tianshou's TRPO at 1M steps, and its entry trains for 2M
JUDGED_AT = {"Humanoid-v5": 1_000_000}
#: former ``# Tuned`` entries of zoo_configs/trpo.yml, each replaced by the robustness candidate chosen against it, by
#: generation (the RL Zoo's schema holds one entry per task, so a task's n-th replaced entry goes to
#: ``former_entries_<n>.yml``, its first to ``former_entries.yml``)
FORMER_ENTRIES = tuple(
    sorted(
        (REPO_ROOT / "benchmarks" / "configs").glob("former_entries*.yml"),
        key=lambda path: int(path.stem.rpartition("_")[2]) if path.stem[-1].isdigit() else 1,
    )
)


def rl_zoo_config(algo: str) -> str:
    """
    :param algo: ``trpo``, ``ppo`` or ``ppo_lstm``
    :return: path of the RL Zoo's own ``hyperparams/<algo>.yml`` (installed with rl_zoo3)
    """
    import rl_zoo3

    return str(Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml")


def config_path(value: str, algo: str) -> str:
    """
    :param value: a ``--trpo-config``-like value: a path, or ``rl_zoo``
    :param algo: the Zoo's file it stands for then (``trpo``, ``ppo``, ``ppo_lstm``)
    :return: the hyperparameter file's path
    """
    return rl_zoo_config(algo) if value == RL_ZOO else value


def select_entry(config_path: str | Path, env_id: str) -> tuple[str, dict[str, Any]]:
    """
    The entry of ``env_id`` in a Zoo hyperparameter file: its own key; else, for a ``-v5`` task, the ``-v4`` key
    (the Zoo's ppo.yml and trpo.yml have MuJoCo v4 entries only); else what the Zoo picks (``atari``, ``default``).

    :return: the key used and a deep copy of its entry
    """
    from sb3_trpo.zoo import load_config
    from sb3_trpo.zoo import select_entry as zoo_select_entry

    config = load_config(config_path)
    if env_id not in config and env_id.endswith("-v5") and env_id[:-1] + "4" in config:
        key = env_id[:-1] + "4"
        return key, copy.deepcopy(config[key])
    key, entry = zoo_select_entry(config, env_id, str(config_path))
    return key, copy.deepcopy(entry)


@functools.cache
def former_entries() -> dict[str, list[dict[str, Any]]]:
    """:return: each task's former ``# Tuned`` entries (``FORMER_ENTRIES``), oldest first, as runs record them"""
    from sb3_trpo.zoo import load_config

    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in FORMER_ENTRIES:
        for env_id, entry in load_config(path).items():
            entries[env_id].append(json_ready(entry))
    return dict(entries)


@functools.cache
def tuned_entries() -> dict[str, dict[str, Any]]:
    """:return: the entries of ``zoo_configs/trpo.yml`` marked ``# Tuned`` (as runs record them), by task"""
    from sb3_trpo.zoo import entry_marks, load_config

    path = REPO_ROOT / "zoo_configs" / "trpo.yml"
    config, marks = load_config(path), entry_marks(path)
    return {env_id: json_ready(entry) for env_id, entry in config.items() if marks.get(env_id, "").startswith("# Tuned")}


@functools.cache
def _rl_zoo_entry(algo: str, env_id: str) -> str | None:
    # The RL Zoo's own entry of env_id (as canonical JSON), None when its file has none (or there is no file); for the
    # family's algorithms, the entry of env_id in their own file of zoo_configs/
    from sb3_trpo.zoo import load_config

    algorithm = ALGORITHMS.get(algo)
    if algorithm is not None and algorithm.own_file is not None:
        own = load_config(REPO_ROOT / "zoo_configs" / f"{algorithm.own_file}.yml")
        return json.dumps(json_ready(own[env_id]), sort_keys=True) if env_id in own else None
    if algorithm is None or algorithm.rl_zoo_file is None:
        return None
    try:
        key, entry = select_entry(rl_zoo_config(algorithm.rl_zoo_file), env_id)
    except ValueError:  # sb3_trpo.zoo.ConfigError: no entry
        return None
    if key not in (env_id, env_id[:-1] + "4"):  # the Zoo's fallback for tasks it has no entry for: not the Zoo's settings
        return None
    return json.dumps(json_ready(entry), sort_keys=True)


def changes_from_rl_zoo(record: dict[str, Any]) -> dict[str, Any]:
    """
    :return: the hyperparameters whose value differs from the RL Zoo's own entry for the run's algorithm and
        environment (for the family's algorithms, their own file's entry; None for a name the run leaves out); empty
        when there is no entry
    """
    zoo_json = _rl_zoo_entry(record["algo"], record["env"])
    if zoo_json is None:
        return {}
    zoo, ours = json.loads(zoo_json), record["hyperparams"]
    return {name: ours.get(name) for name in sorted(set(zoo) | set(ours)) if zoo.get(name) != ours.get(name)}


def _is_entry(record: dict[str, Any], entry: dict[str, Any] | None) -> bool:
    # sb3_trpo with exactly the entry's hyperparameters (the same names as well as the same values: a candidate that
    # adds a hyperparameter, policy_kwargs say, is not the entry) at the entry's budget, or at the steps its task is
    # judged at (JUDGED_AT: Humanoid-v5's tuning runs); a run cut shorter is not the entry
    if record["algo"] != "sb3_trpo" or entry is None:
        return False
    budgets = {int(entry["n_timesteps"]), JUDGED_AT.get(record["env"])}
    return record["hyperparams"] == entry and record["budget"] in budgets


def former_generation(record: dict[str, Any]) -> int | None:
    """:return: which of its environment's former ``# Tuned`` entries (0 the oldest) it ran exactly, None for none"""
    for generation, entry in enumerate(former_entries().get(record["env"], [])):
        if _is_entry(record, entry):
            return generation
    return None


def is_former_entry(record: dict[str, Any]) -> bool:
    """:return: whether the run is sb3_trpo with one of its environment's former ``# Tuned`` entries, exactly"""
    return former_generation(record) is not None


def is_tuned(record: dict[str, Any]) -> bool:
    """
    :return: whether the run is sb3_trpo with its environment's ``# Tuned`` entry of ``zoo_configs/trpo.yml``
        (exactly the entry's hyperparameters, none added, at the entry's budget or the steps its task is judged at)
    """
    return _is_entry(record, tuned_entries().get(record["env"]))


def variant_label(record: dict[str, Any]) -> str:
    """
    :return: its line's label: the algorithm, then what its hyperparameters change from the RL Zoo's
        (``sb3_trpo TRPO (ours), target_kl=0.06``); ``(ours, tuned)`` for a ``# Tuned`` entry that changes them,
        ``(ours, former entry)`` for a former one
    """
    changes = changes_from_rl_zoo(record)
    algorithm = ALGORITHMS.get(record["algo"])
    label = algorithm.label if algorithm is not None else record["algo"]
    if changes and is_tuned(record):
        label = label.replace("(ours)", "(ours, tuned)")
    elif is_former_entry(record):
        # also where the former entry is the Zoo's values: the plain "(ours)" would read as the current entry
        label = label.replace("(ours)", "(ours, former entry)")
    return ", ".join([label] + [f"{name}={value}" for name, value in changes.items()])


def is_headline(record: dict[str, Any]) -> bool:
    """
    :return: whether its line belongs in the environment's main plot: an algorithm with the RL Zoo's own
        hyperparameters, or ours with its ``# Tuned`` entry or a former one (the other candidates go to
        ``candidates/``)
    """
    return not changes_from_rl_zoo(record) or is_tuned(record) or is_former_entry(record)


def headline_label(record: dict[str, Any]) -> str | None:
    """:return: the run's :func:`variant_label` when it :func:`is_headline`, else None"""
    return variant_label(record) if is_headline(record) else None


def by_variant(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """
    :return: the runs of each algorithm and hyperparameter set, keyed by ``variant_label`` (algorithms in
        ``ALGO_ORDER``, the RL Zoo's settings first), sorted by seed
    """
    grouped: dict[tuple[int, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for record in runs:
        algo = record["algo"]
        rank = ALGO_ORDER.index(algo) if algo in ALGO_ORDER else len(ALGO_ORDER)
        label = variant_label(record)
        grouped[(rank, algo, len(label), label)].append(record)
    return {key[3]: sorted(grouped[key], key=lambda record: record["seed"]) for key in sorted(grouped)}
