"""zoo_configs/trpo.yml: every entry parses the way the RL Zoo parses it and builds a TRPO on its environment."""

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch as th
import yaml

pytest.importorskip("rl_zoo3", reason='the RL Zoo is an optional dependency: pip install "sb3_trpo[extra]"')

import rl_zoo3
from rl_zoo3.exp_manager import ExperimentManager
from setuptools import find_packages

from sb3_trpo import NPG, TRPO, zoo

zoo.register()  # what `python -m sb3_trpo` and `--gym-packages sb3_trpo.zoo.plugin` do

th.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = ROOT / "zoo_configs" / "trpo.yml"
CONFIG = zoo.load_config(CONFIG_PATH)
# Environments used to build the fallback entries: ids without an entry of their own
FALLBACK_ENV = {"default": "FrozenLake-v1", "atari": "SpaceInvadersNoFrameskip-v4"}
REQUIRED_ENVS = [
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "BipedalWalker-v3",
    "Hopper-v5",
    "Walker2d-v5",
    "HalfCheetah-v5",
    "Ant-v5",
    "Swimmer-v5",
    "Humanoid-v5",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "Reacher-v5",
    "BreakoutNoFrameskip-v4",
]


def zoo_manager(env_id: str, tmp_path: Path) -> ExperimentManager:
    # The Zoo's own experiment manager, reading our file; it creates nothing on construction
    return ExperimentManager(
        argparse.Namespace(),
        zoo.DEFAULT_ALGO,
        env_id,
        str(tmp_path / "logs"),
        n_timesteps=0,
        eval_freq=-1,
        seed=0,
        verbose=0,
        config=str(CONFIG_PATH),
    )


def test_default_config_path_is_the_top_level_file() -> None:
    assert zoo.default_config_path() == CONFIG_PATH


def test_required_environments_have_an_entry() -> None:
    missing = [env_id for env_id in REQUIRED_ENVS if env_id not in CONFIG]
    assert not missing, f"no entry for {missing} in {CONFIG_PATH}"
    atari = zoo.select_entry(CONFIG, "BreakoutNoFrameskip-v4", "trpo.yml")[1]
    assert atari["policy"] == "CnnPolicy"
    assert "stable_baselines3.common.atari_wrappers.AtariWrapper" in atari["env_wrapper"]


TUNED = re.compile(
    r"^# Tuned on tuning seeds 0-([24]) \(.*\) at (\d+[kM]) steps \(target -?\d+\); held-out results in docs/results\.md$"
)


def _steps(written: str) -> int:
    """:return: the steps a mark writes as ``100k`` or ``1M``"""
    return int(written[:-1]) * {"k": 1_000, "M": 1_000_000}[written[-1]]


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: where the tuning-seed runs of the `# Tuned` entries are (the tuning grid; the robustness work, for promoted candidates)
TUNING_FOLDERS = (RESULTS, RESULTS.parent / "robustness")


def _entry_marks() -> dict[str, str]:
    marks = zoo.entry_marks(CONFIG_PATH)
    assert sorted(marks) == sorted(CONFIG), "every entry has a comment line right above it"
    return marks


def test_every_entry_is_marked_tuned_or_to_be_tuned() -> None:
    for key, mark in _entry_marks().items():
        assert mark.startswith("# To be tuned") or TUNED.match(mark), f"entry {key!r} is not marked: {mark!r}"


def test_tuned_entries_name_the_tuning_seeds_that_chose_them_and_quote_no_return() -> None:
    # A `# Tuned` mark names the tuning seeds that chose the entry, whose runs are in benchmarks/results/ or, for an
    # entry promoted from a robustness candidate, benchmarks/robustness/ (at the
    # budget the mark names and the entry's hyperparameters), and quotes none of their returns: results come from
    # evaluation seeds only
    tuned = {key: TUNED.match(mark) for key, mark in _entry_marks().items() if mark.startswith("# Tuned")}
    assert tuned, "no entry is marked # Tuned"
    for key, match in tuned.items():
        assert match is not None, key
        assert "+/-" not in match.string, f"{key}: a # Tuned mark quotes a tuning-seed return"
        # The entry's runs in each folder (a task re-run afresh with its candidates in benchmarks/robustness/ on
        # seeds 0-4 keeps its tuning seeds 0-2 in benchmarks/results/): the mark's seeds are those of one of them
        found = {}
        for folder in TUNING_FOLDERS:
            path = folder / f"{key}.jsonl"
            runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
            found[folder.name] = {
                run["seed"]
                for run in runs
                if run["algo"] == "sb3_trpo"
                and run["budget"] == _steps(match.group(2))
                and set(run["hyperparams"]) == set(CONFIG[key])  # a candidate that adds a name is not the entry
                and all(run["hyperparams"][name] == value for name, value in CONFIG[key].items())
            }
        marked = set(range(int(match.group(1)) + 1))
        assert marked in found.values(), f"{key}: the entry's runs have seeds {found}"
        seeds = set().union(*found.values())
        # Judged at the entry's budget, or earlier where the target is set there (Humanoid-v5: at 1M of its 2M steps)
        assert _steps(match.group(2)) <= int(CONFIG[key]["n_timesteps"]), f"{key}: judged beyond its budget"
        assert seeds, key


CONFIRMATION = ROOT / "benchmarks" / "confirmation"
CONFIRMATION_SEEDS = range(1000, 2000)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_no_confirmation_seed_is_in_any_record_outside_the_confirmation_runs() -> None:
    # Confirmation seeds never choose anything: no record of a choice (tuning, robustness, ablation, development
    # seeds, Optuna, ...) uses one
    for path in (ROOT / "benchmarks").rglob("*.jsonl"):
        if CONFIRMATION in path.parents:
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                assert record.get("seed") not in CONFIRMATION_SEEDS, f"{path}: confirmation seed {record.get('seed')}"


def test_the_confirmation_entries_are_the_current_entries_and_predate_their_runs() -> None:
    frozen = zoo.load_config(CONFIRMATION / "entries.yml")
    marks = _entry_marks()
    assert set(frozen) == {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5", "Humanoid-v5"}
    for key, entry in frozen.items():
        # a changed entry needs a new, unseen confirmation set
        assert marks[key].startswith("# Tuned") and CONFIG[key] == entry, f"{key} changed since its confirmation"
    added = _git("log", "--diff-filter=A", "--format=%H", "--", "benchmarks/confirmation/entries.yml").stdout.split()
    if not added:
        pytest.skip("no git history of benchmarks/confirmation/entries.yml (not a clone)")
    frozen_at = added[-1]
    for path in sorted((CONFIRMATION / "results").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["seed_role"] == "confirmation" and record["seed"] in CONFIRMATION_SEEDS
            assert record["hyperparams"] == frozen[record["env"]] and not record["git_dirty"]
            assert record["fingerprint"] and record["hardware"]["cpu"]
            # made by the code of the freezing commit or a later one
            is_ancestor = _git("merge-base", "--is-ancestor", frozen_at, record["git_commit"])
            assert is_ancestor.returncode == 0, f"{path.name} seed {record['seed']}: run before the entries were frozen"


@pytest.mark.parametrize("key", sorted(CONFIG))
def test_entry_names_are_trpo_arguments(key: str) -> None:
    zoo.check_hyperparameters(CONFIG[key], key)


def test_unknown_name_is_reported() -> None:
    with pytest.raises(zoo.ConfigError, match=r"unknown hyperparameter 'target_kll'.*did you mean 'target_kl'"):
        zoo.check_hyperparameters({"policy": "MlpPolicy", "target_kll": 0.01}, "test")


def test_zoo_values_are_kept() -> None:
    # Configs must transfer unchanged from the Zoo's TRPO file: every value it sets is ours too (MuJoCo v4 -> v5).
    # Two exceptions, in `# Tuned` entries only: cg_damping multiplied by the factor that multiplies target_kl
    # (0.01 when the Zoo leaves it at its default), which gives sb3-contrib's step on d-dimensional actions; and a
    # value that the entry's mark names (`n_steps 2048`), so a reader of the mark knows what was changed
    with open(Path(rl_zoo3.__file__).parent / "hyperparams" / "trpo.yml") as file:
        zoo_config = yaml.safe_load(file)
    marks = _entry_marks()
    compared = scaled = named = 0
    for key, entry in CONFIG.items():
        zoo_key = key.replace("-v5", "-v4") if key.endswith("-v5") else key
        if zoo_key not in zoo_config:
            continue
        compared += 1
        zoo_entry = zoo_config[zoo_key]
        for name, value in zoo_entry.items():
            if entry.get(name) == value:
                continue
            tuned = marks[key].startswith("# Tuned")
            assert tuned, f"{key}: {name}={entry.get(name)!r}, the RL Zoo has {value!r}"
            if f"{name} {entry.get(name)}" in marks[key]:
                named += 1
                continue
            assert name == "cg_damping", f"{key}: {name}={entry.get(name)!r} (the Zoo's {value!r}), not in the mark"
            factor = entry["target_kl"] / zoo_entry.get("target_kl", 0.01)
            assert factor > 1 and entry[name] == pytest.approx(value * factor), f"{key}: {name} not x {factor}"
            scaled += 1
    assert compared >= 14
    assert scaled == 1  # Ant-v5
    # n_steps of Hopper-v5, Ant-v5 and LunarLander-v3, cg_damping of Walker2d-v5 and Hopper-v5 (whose target_kl is a
    # schedule) and of Humanoid-v5, gae_lambda of Swimmer-v5, sde_sample_freq of MountainCarContinuous-v0, gamma and
    # gae_lambda of HalfCheetah-v5, gamma and gae_lambda of Hopper-v5, n_steps and n_critic_updates of LunarLanderContinuous-v3
    assert named == 14


@pytest.mark.parametrize("key", sorted(CONFIG))
def test_entry_builds_trpo(key: str, tmp_path: Path) -> None:
    env_id = FALLBACK_ENV.get(key, key)
    if ExperimentManager.is_atari(env_id):
        pytest.importorskip("ale_py", reason="Atari needs ale-py")
    try:
        gym.make(env_id).close()
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        pytest.skip(f"{env_id}: {error}")

    manager = zoo_manager(env_id, tmp_path)
    unprocessed, _ = manager.read_hyperparameters()
    assert unprocessed == CONFIG[key]
    # The Zoo's preprocessing: schedules, normalize, policy_kwargs strings, wrappers, frame stacking
    hyperparams, manager.env_wrapper, _, manager.vec_env_wrapper = manager._preprocess_hyperparams(unprocessed)
    assert manager.n_timesteps > 0
    zoo.check_hyperparameter_types(hyperparams, "trpo")  # what `python -m sb3_trpo train` checks
    env = manager.create_envs(n_envs=1, no_log=True)
    try:
        model = TRPO(env=env, seed=0, **hyperparams)
        assert isinstance(model, TRPO)
        assert model.n_steps == CONFIG[key].get("n_steps", 2048)
        # A number, or the Zoo's "lin_<value>": the radius from <value> at the start to 0 at the end
        target_kl = CONFIG[key].get("target_kl", 0.01)
        if isinstance(target_kl, str):
            start = float(target_kl.removeprefix("lin_"))
            assert [model.target_kl(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([start, start / 2, 0.0])
        else:
            assert model.target_kl == target_kl
        assert manager.normalize == CONFIG[key].get("normalize", False)
    finally:
        env.close()
    assert not (tmp_path / "logs").exists()


def test_zoo_module_exposes_hyperparams_and_registers_trpo() -> None:
    # What `-conf sb3_trpo.zoo` and `--gym-packages sb3_trpo.zoo.plugin` of plain rl_zoo3 rely on
    import sb3_trpo.zoo.plugin  # noqa: F401

    assert zoo.hyperparams == CONFIG
    assert zoo.hyperparams is not zoo.hyperparams  # a fresh copy each time: the Zoo updates entries in place
    assert rl_zoo3.ALGOS["trpo"] is TRPO


def test_registration_is_an_explicit_call_and_the_plugin_makes_it() -> None:
    # In a fresh interpreter: importing sb3_trpo.zoo leaves the Zoo's tables alone; the plugin module registers
    code = (
        "import rl_zoo3, sb3_contrib, sb3_trpo.zoo;"
        "assert rl_zoo3.ALGOS['trpo'] is sb3_contrib.TRPO and 'npg' not in rl_zoo3.ALGOS;"
        "import sb3_trpo.zoo.plugin, sb3_trpo;"
        "assert rl_zoo3.ALGOS['trpo'] is sb3_trpo.TRPO and rl_zoo3.ALGOS['trpo_mask_lstm'] is sb3_trpo.MaskableRecurrentTRPO"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_pyproject_ships_the_config_and_every_package() -> None:
    with open(ROOT / "pyproject.toml", "rb") as file:
        setuptools_config: dict[str, Any] = tomllib.load(file)["tool"]["setuptools"]
    packages = set(setuptools_config["packages"])
    on_disk = set(find_packages(str(ROOT), include=["sb3_trpo", "sb3_trpo.*"]))
    assert on_disk <= packages, f"add {sorted(on_disk - packages)} to [tool.setuptools] packages in pyproject.toml"
    assert setuptools_config["package-dir"]["sb3_trpo.zoo_configs"] == "zoo_configs"
    assert "*.yml" in setuptools_config["package-data"]["sb3_trpo.zoo_configs"]


def test_entry_marks_are_the_comment_right_above_each_entry(tmp_path: Path) -> None:
    path = tmp_path / "marks.yml"
    path.write_text(
        "# header\n\n# Tuned (x): 1.0 +/- 0.0 at 1k steps\nA-v0:\n  gamma: 0.9\n\nB-v0:\n  gamma: 0.9\n# To be\nC-v0: {}\n"
    )
    assert zoo.entry_marks(path) == {"A-v0": "# Tuned (x): 1.0 +/- 0.0 at 1k steps", "C-v0": "# To be"}
    with pytest.raises(zoo.ConfigError, match="cannot read the hyperparameter file"):
        zoo.entry_marks(tmp_path / "missing.yml")


NPG_CONFIG_PATH = ROOT / "zoo_configs" / "npg.yml"
NPG_CONFIG = zoo.load_config(NPG_CONFIG_PATH)
NPG_REQUIRED_ENVS = [
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCarContinuous-v0",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Walker2d-v5",
    "Ant-v5",
    "Swimmer-v5",
]


def test_npg_config_covers_classic_box2d_and_mujoco_and_is_marked() -> None:
    assert zoo.default_config_path("npg") == NPG_CONFIG_PATH
    missing = [env_id for env_id in NPG_REQUIRED_ENVS if env_id not in NPG_CONFIG]
    assert not missing, f"no entry for {missing} in {NPG_CONFIG_PATH}"
    marks = zoo.entry_marks(NPG_CONFIG_PATH)
    assert sorted(marks) == sorted(NPG_CONFIG)
    # No NPG result is committed yet: nothing may claim to be tuned
    assert all(mark.startswith("# To be tuned") for mark in marks.values()), marks


@pytest.mark.parametrize("key", sorted(NPG_CONFIG))
def test_npg_entry_builds_npg(key: str, tmp_path: Path) -> None:
    zoo.check_hyperparameters(NPG_CONFIG[key], key, "npg")
    env_id = FALLBACK_ENV.get(key, key)
    try:
        gym.make(env_id).close()
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        pytest.skip(f"{env_id}: {error}")
    manager = ExperimentManager(
        argparse.Namespace(), "npg", env_id, str(tmp_path / "logs"), n_timesteps=0, eval_freq=-1, seed=0, verbose=0,
        config=str(NPG_CONFIG_PATH),
    )  # fmt: skip
    unprocessed, _ = manager.read_hyperparameters()
    assert unprocessed == NPG_CONFIG[key]
    hyperparams, manager.env_wrapper, _, manager.vec_env_wrapper = manager._preprocess_hyperparams(unprocessed)
    zoo.check_hyperparameter_types(hyperparams, "npg")  # what `python -m sb3_trpo train` checks
    env = manager.create_envs(n_envs=1, no_log=True)
    try:
        model = NPG(env=env, seed=0, **hyperparams)
        assert type(model) is NPG and model.target_kl == NPG_CONFIG[key].get("target_kl", 0.01)
    finally:
        env.close()


def test_npg_rejects_line_search_arguments_and_is_registered() -> None:
    with pytest.raises(zoo.ConfigError, match=r"unknown hyperparameter 'line_search_max_iter' for NPG"):
        zoo.check_hyperparameters({"policy": "MlpPolicy", "line_search_max_iter": 5}, "test", "npg")
    zoo.check_hyperparameters({"policy": "MlpPolicy", "line_search_max_iter": 5}, "test", "trpo")
    assert rl_zoo3.ALGOS["npg"] is NPG
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    from sb3_trpo.zoo.tuning import sample_npg_params, sample_trpo_params

    assert HYPERPARAMS_SAMPLER["npg"] is sample_npg_params and HYPERPARAMS_SAMPLER["trpo"] is sample_trpo_params
    with pytest.raises(
        zoo.ConfigError, match=r"unknown --algo 'ppo'; choose from trpo, npg, trpo_mask, trpo_lstm, trpo_mask_lstm"
    ):
        zoo.algorithm_class("ppo")


FAMILY_CONFIGS = {
    algo: (ROOT / "zoo_configs" / f"{algo}.yml", required)
    for algo, required in (
        ("trpo_mask", ["MaskedTaxi-v4", "InvalidActionsDiscrete-v0"]),
        ("trpo_lstm", ["CartPoleNoVel-v1", "PendulumNoVel-v1"]),
        ("trpo_mask_lstm", ["MaskedTaxi-v4", "InvalidActionsDiscrete-v0", "MaskedCueMemory-v0"]),
    )
}
#: each family file's algorithm (benchmarks/algorithms.py) and the folder of its tuning-seed records (benchmarks/<dir>/tuning/)
FAMILY_TUNING = {
    "trpo_mask": ("sb3_trpo_mask", "masked"),
    "trpo_lstm": ("sb3_trpo_lstm", "recurrent"),
    "trpo_mask_lstm": ("sb3_trpo_mask_lstm", "masked"),
}
FAMILY_ENTRIES = [(algo, key) for algo, (path, _) in FAMILY_CONFIGS.items() for key in sorted(zoo.load_config(path))]


@pytest.mark.parametrize("algo", sorted(FAMILY_CONFIGS))
def test_maskable_and_recurrent_configs_cover_their_tasks_and_are_marked(algo: str) -> None:
    path, required = FAMILY_CONFIGS[algo]
    assert zoo.default_config_path(algo) == path
    config = zoo.load_config(path)
    assert not [env_id for env_id in required if env_id not in config]
    marks = zoo.entry_marks(path)
    assert sorted(marks) == sorted(config)
    # A `# Tuned` mark names the tuning seeds that chose the entry, whose runs of exactly the entry are committed in
    # benchmarks/<family>/tuning/, and quotes none of their returns
    benchmark_algo, folder = FAMILY_TUNING[algo]
    for key, mark in marks.items():
        if mark.startswith("# To be tuned"):
            continue
        match = TUNED.match(mark)
        assert match is not None and "+/-" not in mark, f"{algo} {key}: {mark!r}"
        records = ROOT / "benchmarks" / folder / "tuning" / f"{key}.jsonl"
        runs = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
        entry = json.loads(json.dumps(config[key]))  # as the records hold it
        seeds = {run["seed"] for run in runs if run["algo"] == benchmark_algo and run["hyperparams"] == entry}
        assert seeds == set(range(int(match.group(1)) + 1)), f"{algo} {key}: the entry's runs have seeds {sorted(seeds)}"
        assert all(run["seed_role"] == "tuning" for run in runs)


@pytest.mark.parametrize(("algo", "key"), FAMILY_ENTRIES)
def test_maskable_and_recurrent_entries_build_their_class(algo: str, key: str, tmp_path: Path) -> None:
    path, _ = FAMILY_CONFIGS[algo]
    entry = zoo.load_config(path)[key]
    zoo.check_hyperparameters(entry, key, algo)
    # (the default entry on a task of the family's kind)
    env_id = (
        key
        if key != "default"
        else {
            "trpo_mask": "InvalidActionsDiscrete-v0",
            "trpo_lstm": "CartPoleNoVel-v1",
            "trpo_mask_lstm": "InvalidActionsDiscrete-v0",
        }[algo]
    )
    manager = ExperimentManager(
        argparse.Namespace(), algo, env_id, str(tmp_path / "logs"), n_timesteps=0, eval_freq=-1, seed=0, verbose=0,
        config=str(path),
    )  # fmt: skip
    unprocessed, _ = manager.read_hyperparameters()
    hyperparams, manager.env_wrapper, _, manager.vec_env_wrapper = manager._preprocess_hyperparams(unprocessed)
    zoo.check_hyperparameter_types(hyperparams, algo)  # what `python -m sb3_trpo train` checks
    env = manager.create_envs(n_envs=1, no_log=True)
    try:
        algorithm = zoo.algorithm_class(algo)
        model = algorithm(env=env, seed=0, **hyperparams)
        assert type(model) is algorithm and rl_zoo3.ALGOS[algo] is algorithm
    finally:
        env.close()
