"""
RL Zoo (``rl_zoo3``) integration of sb3_trpo's algorithms (TRPO, NPG, MaskableTRPO, RecurrentTRPO,
MaskableRecurrentTRPO).

Importing this module puts ``sb3_trpo.TRPO`` in the Zoo's algorithm table under the key ``"trpo"`` (replacing
sb3-contrib's TRPO in the current process only), ``sb3_trpo.NPG`` under ``"npg"``, ``sb3_trpo.MaskableTRPO`` under
``"trpo_mask"``, ``sb3_trpo.RecurrentTRPO`` under ``"trpo_lstm"`` and ``sb3_trpo.MaskableRecurrentTRPO`` under
``"trpo_mask_lstm"``, so ``--algo trpo|npg|trpo_mask|trpo_lstm|trpo_mask_lstm``, the Zoo's Optuna tuning (with our
search spaces, :mod:`sb3_trpo.tuning`; not for the maskable ones, whose trial evaluations would need masks) and its
log folders (``logs/trpo/ENV_ID_N``, ...) all apply to our classes. It also registers the masked environments of
:mod:`sb3_trpo.envs`. With ``trpo_mask`` and ``trpo_mask_lstm``, evaluations during training and the final one take
the env's masks. The module also exposes the hyperparameters of ``zoo_configs/trpo.yml`` as ``hyperparams``, the
attribute the Zoo reads from a python module given with ``-conf``.
With the Zoo's own scripts::

    python -m rl_zoo3.train --algo trpo --env CartPole-v1 --gym-packages sb3_trpo.zoo -conf sb3_trpo.zoo
    python -m rl_zoo3.enjoy --algo trpo --env CartPole-v1 --gym-packages sb3_trpo.zoo -f logs

``python -m sb3_trpo train|enjoy`` (``sb3_trpo.cli``) does the same, checks the run's configuration before the Zoo
creates any folder, and ends training with an evaluation of the final model.
"""

import argparse
import atexit
import collections.abc
import contextlib
import difflib
import inspect
import numbers
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import optuna
import rl_zoo3.import_envs
import yaml
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS, create_test_env, get_saved_hyperparams
from stable_baselines3.common.base_class import BaseAlgorithm
import rl_zoo3.exp_manager
import torch.distributed as dist
from stable_baselines3.common.callbacks import ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_trpo
import sb3_trpo.envs
from sb3_trpo.common.distributed import AllRanksProgressBar
from sb3_trpo.common.evaluation import MaskableEvalCallback
from sb3_trpo.common.evaluation import evaluate_policy as evaluate_maskable_policy
from sb3_trpo.tuning import SAMPLERS
from sb3_trpo.zoo.registry import ALGORITHMS, DEFAULT_ALGO, MASKABLE_ALGORITHMS

EXTRA_INSTALL = 'pip install "sb3_trpo[extra]"'

# Keys of a Zoo entry that the Zoo consumes itself (they are not passed to the algorithm's constructor)
ZOO_KEYS = frozenset(
    {
        "n_envs",
        "n_timesteps",
        "normalize",
        "env_wrapper",
        "vec_env_wrapper",
        "frame_stack",
        "callback",
        "monitor_kwargs",
        "env_kwargs",
    }
)
# Constructor arguments the Zoo passes itself (from its command line): an entry must not set them
ZOO_CONSTRUCTOR_ARGS = frozenset({"env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"})


class ConfigError(ValueError):
    """A problem with a run's configuration (environment id, hyperparameter file or entry), told in one line."""


class MissingDependencyError(ConfigError):
    """The environment needs an optional package that is not installed."""


class TrainingInterrupted(Exception):
    """
    Training stopped by a signal (SIGINT, SIGTERM) and the model saved: raised after the save, to end the command.

    :param received: the signal
    :param message: what was saved where, in one line
    """

    def __init__(self, received: signal.Signals, message: str) -> None:
        super().__init__(message)
        self.signal = int(received)


def register() -> None:
    """
    Make ``--algo trpo``, ``npg``, ``trpo_mask``, ``trpo_lstm`` and ``trpo_mask_lstm`` of the RL Zoo use sb3_trpo's
    classes in this process.

    ``rl_zoo3.utils.ALGOS`` is the one table that ``rl_zoo3.train``, ``rl_zoo3.enjoy`` and the experiment manager
    read, so replacing its entries (in place) is enough. For ``-optimize``, the samplers are ours
    (:mod:`sb3_trpo.tuning`).
    """
    ALGOS.update({name: entry.load() for name, entry in ALGORITHMS.items()})
    HYPERPARAMS_SAMPLER.update(SAMPLERS)
    for algo in ALGORITHMS:
        HYPERPARAMS_CONVERTER.setdefault(algo, HYPERPARAMS_CONVERTER["trpo"])


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """
    The class behind an ``--algo`` name.

    :param algo: ``"trpo"``, ``"npg"``, ``"trpo_mask"``, ``"trpo_lstm"`` or ``"trpo_mask_lstm"``
    :return: the algorithm class
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown --algo {algo!r}; choose from {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo].load()


register()


def default_config_path(algo: str = DEFAULT_ALGO) -> Path:
    """
    The hyperparameter file used when the user gives no ``-conf``: ``zoo_configs/<algo>.yml``.

    It lives once, at the top of the repository; an installed package holds it as ``sb3_trpo/zoo_configs/<algo>.yml``
    (see ``[tool.setuptools.package-dir]`` in pyproject.toml).

    :param algo: ``--algo`` name
    :return: path of the file
    """
    config_name = f"{algo}.yml"
    package_dir = Path(sb3_trpo.__file__).resolve().parent
    candidates = [package_dir / "zoo_configs" / config_name, package_dir.parent / "zoo_configs" / config_name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"the default hyperparameter file {config_name} was not found (looked for {' and '.join(map(str, candidates))}); "
        "reinstall sb3_trpo or pass a file with -conf PATH"
    )


#: ``-conf`` value that stands for the RL Zoo's own hyperparameter file of the algorithm (``rl_zoo3/hyperparams/``)
RL_ZOO_CONFIG = "rl_zoo3"


def rl_zoo_config_path(algo: str = DEFAULT_ALGO) -> Path:
    """
    :param algo: an RL Zoo algorithm name (``trpo``, ``ppo``, ...)
    :return: the RL Zoo's own hyperparameter file of ``algo``, installed with rl_zoo3
    """
    import rl_zoo3

    return Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml"


def sb3_contrib_trust_region(algo: str, config: str | Path) -> bool:
    """
    Whether a run's entries were written for sb3-contrib's TRPO: ``--algo trpo`` with the RL Zoo's own
    ``hyperparams/trpo.yml``. Its entries then get ``kl_constraint: sb3_contrib`` unless they name one
    (:func:`zoo_trust_region`), so that the Zoo's values mean the trust region they were tuned with.

    :param algo: ``--algo`` name
    :param config: the hyperparameter file
    :return: True for the RL Zoo's own TRPO file
    """
    return algo == "trpo" and Path(config).resolve() == rl_zoo_config_path("trpo")


def zoo_trust_region(hyperparams: dict[str, Any], algo: str, config: str | Path) -> dict[str, Any]:
    """
    Apply :func:`sb3_contrib_trust_region`'s rule to an entry, in place.

    :param hyperparams: an entry of ``config`` (with the ``-params`` overrides, which may name ``kl_constraint``)
    :param algo: ``--algo`` name
    :param config: the hyperparameter file
    :return: ``hyperparams``
    """
    if sb3_contrib_trust_region(algo, config):
        hyperparams.setdefault("kl_constraint", "sb3_contrib")
    return hyperparams


def load_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """
    Read a hyperparameter file in the RL Zoo's schema (a mapping from environment ids to entries).

    :param path: path of the YAML file
    :return: the entries, as ``yaml.safe_load`` returns them (anchors merged, ``!!float`` converted)
    """
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read the hyperparameter file {path}: {error.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None
    if not isinstance(config, dict) or not all(isinstance(entry, dict) for entry in config.values()):
        raise ConfigError(f"{path} must map environment ids to mappings of hyperparameters (the RL Zoo's schema)")
    return config


def entry_marks(path: str | Path) -> dict[str, str]:
    """
    The comment line right above each top-level entry of a hyperparameter file: in ``zoo_configs/trpo.yml``,
    ``# Tuned on tuning seeds 0-2 (...) at <budget> steps (target ...); ...`` or ``# To be tuned ...``.

    :param path: path of the YAML file
    :return: the mark of each entry that has one, by environment id
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"cannot read the hyperparameter file {path}: {error.strerror}") from None
    marks, previous = {}, ""
    for line in lines:
        match = re.match(r"^([\w/.-]+):", line)
        if match is not None and previous.startswith("#"):
            marks[match.group(1)] = previous
        if line.strip():
            previous = line
    return marks


def __getattr__(name: str) -> Any:
    # `-conf sb3_trpo.zoo` makes the Zoo read `sb3_trpo.zoo.hyperparams`: a fresh copy of zoo_configs/trpo.yml
    # (the Zoo updates the entry it picks in place)
    if name == "hyperparams":
        return load_config(default_config_path())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_env_id(env_id: str) -> None:
    """
    Check that ``env_id`` is registered in Gymnasium (after the Zoo's and ``--gym-packages``'s registrations).

    :param env_id: environment id
    """
    registered = list(gym.envs.registry.keys())
    if env_id not in registered:
        close = difflib.get_close_matches(env_id, registered, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown environment id {env_id!r} (not in the Gymnasium registry){hint}")


def check_env_dependencies(env_id: str) -> None:
    """
    Create the environment once, to report a missing optional package (MuJoCo, Box2D, Atari) in one line.

    :param env_id: a registered environment id
    """
    try:
        env = gym.make(env_id)
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        message = " ".join(str(error).split())
        raise MissingDependencyError(
            f"{env_id} needs an optional dependency ({message}); install it with: {EXTRA_INSTALL}"
        ) from None
    env.close()


def select_entry(config: dict[str, dict[str, Any]], env_id: str, config_name: str) -> tuple[str, dict[str, Any]]:
    """
    Pick the entry of ``env_id`` the way the RL Zoo does: its own key, else ``atari`` for an Atari game, else ``default``.

    :param config: the hyperparameter file's entries
    :param env_id: environment id
    :param config_name: name of the file, for messages
    :return: the key used and a copy of its entry
    """
    if env_id in config:
        key = env_id
    elif ExperimentManager.is_atari(env_id):
        key = "atari"
        if key not in config:
            raise ConfigError(
                f"no entry for {env_id!r} (nor 'atari') in {config_name}; add one or pass another file with -conf"
            )
    elif "default" in config:
        key = "default"
    else:
        raise ConfigError(f"no entry for {env_id!r} (nor 'default') in {config_name}; add one or pass another file with -conf")
    return key, dict(config[key])


def check_hyperparameters(hyperparams: dict[str, Any], where: str, algo: str = DEFAULT_ALGO) -> None:
    """
    Check that every key is a constructor argument of the algorithm (TRPO: same names as sb3-contrib's) or a key of
    the Zoo.

    :param hyperparams: an entry of a hyperparameter file, with the ``-params`` overrides applied
    :param where: where the keys come from, for messages
    :param algo: ``--algo`` name
    """
    algorithm = algorithm_class(algo)
    arguments = set(inspect.signature(algorithm.__init__).parameters) - {"self"} - ZOO_CONSTRUCTOR_ARGS
    for name in hyperparams:
        if name in ZOO_CONSTRUCTOR_ARGS:
            raise ConfigError(f"{name!r} in {where} is set by the RL Zoo from its command line; remove it from the entry")
        if name not in arguments and name not in ZOO_KEYS:
            close = difflib.get_close_matches(name, sorted(arguments | ZOO_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown hyperparameter {name!r} for {algorithm.__name__} in {where}{hint}")
    if "policy" not in hyperparams:
        raise ConfigError(f"{where} has no 'policy' (e.g. policy: 'MlpPolicy')")


def _accepts(annotation: Any, value: Any) -> bool:
    """
    Whether ``value`` is of the type a constructor argument is annotated with (numbers, strings, booleans, None,
    callables, classes, containers and unions of them; any other form is left to the constructor).
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(member, value) for member in typing.get_args(annotation))
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return callable(value)
    if origin is type:
        return isinstance(value, type)
    if isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(annotation, type) and annotation is not Any:
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = list(dict.fromkeys(_type_name(member) for member in typing.get_args(annotation)))
        return ", ".join(members[:-1]) + " or " + members[-1] if len(members) > 1 else members[0]
    if annotation is None or annotation is type(None):
        return "None"
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return "a callable (a schedule of the progress remaining)"
    if origin is type:
        return "a class"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a dict", list: "a list"}
    base = origin if isinstance(origin, type) else annotation
    return names.get(base, f"a {getattr(base, '__name__', str(base))}")


def check_hyperparameter_types(hyperparams: dict[str, Any], algo: str = DEFAULT_ALGO) -> None:
    """
    Check each value against the type its constructor argument is annotated with (e.g. ``n_steps`` an integer,
    ``target_kl`` a number, a ``"lin_<x>"`` string or a schedule), so that a wrong type is one line naming the key
    instead of an error from deep inside the model's construction.

    :param hyperparams: constructor arguments, as the RL Zoo passes them (after its preprocessing: schedules built,
        ``policy_kwargs`` evaluated); other keys are not checked
    :param algo: ``--algo`` name
    """
    algorithm = algorithm_class(algo)
    parameters = inspect.signature(algorithm.__init__).parameters
    for name, value in hyperparams.items():
        parameter = parameters.get(name)
        if parameter is None or parameter.annotation is inspect.Parameter.empty:
            continue
        if not _accepts(parameter.annotation, value):
            raise ConfigError(
                f"hyperparameter {name} of {algorithm.__name__} must be {_type_name(parameter.annotation)}, "
                f"got {value!r} ({type(value).__name__})"
            )


# The Zoo's own keys that it reads as numbers (an int() or a comparison of another type fails without naming them)
ZOO_NUMBER_KEYS = {"n_envs": int, "n_timesteps": float}


def check_run(
    env_id: str,
    conf_file: str,
    overrides: dict[str, Any] | None = None,
    n_timesteps: int = -1,
    algo: str = DEFAULT_ALGO,
    optimize: bool = False,
) -> dict[str, Any]:
    """
    Check a training run's configuration before the Zoo creates its log folder.

    :param env_id: environment id
    :param conf_file: the hyperparameter file (YAML); python files and modules are checked by the Zoo itself
    :param overrides: the ``-params`` overrides
    :param n_timesteps: the ``-n`` option (the entry needs ``n_timesteps`` when it is not positive)
    :param algo: ``--algo`` name
    :param optimize: whether the run tunes hyperparameters (``-optimize``)
    :return: the entry with the overrides applied
    """
    check_env_id(env_id)
    check_env_dependencies(env_id)
    if optimize and algo in MASKABLE_ALGORITHMS:
        raise ConfigError(
            f"-optimize is not available for --algo {algo}: the RL Zoo's trial evaluation does not pass action masks"
        )
    if not conf_file.endswith((".yml", ".yaml")):
        return {}
    key, hyperparams = select_entry(load_config(conf_file), env_id, conf_file)
    check_hyperparameters(hyperparams, f"the entry {key!r} of {conf_file}", algo)
    if overrides:
        check_hyperparameters({**hyperparams, **overrides}, f"the -params overrides for {conf_file}", algo)
        hyperparams.update(overrides)
    zoo_trust_region(hyperparams, algo, conf_file)
    for name, annotation in ZOO_NUMBER_KEYS.items():
        if name in hyperparams and not _accepts(annotation, hyperparams[name]):
            where = "-params" if overrides and name in overrides else f"the entry {key!r} of {conf_file}"
            raise ConfigError(
                f"{name} in {where} must be {_type_name(annotation)}, "
                f"got {hyperparams[name]!r} ({type(hyperparams[name]).__name__})"
            )
    if n_timesteps <= 0 and "n_timesteps" not in hyperparams:
        raise ConfigError(f"the entry {key!r} of {conf_file} has no 'n_timesteps'; add it or pass -n N")
    return hyperparams


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


class _UnprunedTrial:
    """
    An Optuna trial as the second and later runs of a multi-seed trial see it: everything is the trial's (its
    sampled hyperparameters, attributes, number), but evaluations are not reported and never prune (the pruner
    compares the first run's evaluations with other trials' first runs).

    :param trial: the trial
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def report(self, value: float, step: int) -> None:
        """Ignore an intermediate value (the first run's are the trial's)."""

    def should_prune(self) -> bool:
        """:return: False: a later run of a trial whose first run went on is not pruned"""
        return False


@contextlib.contextmanager
def signals_raise_keyboard_interrupt(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[list[signal.Signals]]:
    """
    While in the block, the first of ``signals`` received raises ``KeyboardInterrupt`` (Python's own reaction to
    SIGINT, here for SIGTERM too, which would otherwise end the process at once); later ones are only recorded, so that
    the cleanup after the first is not cut short. The previous handlers are restored on leaving. Outside the main
    thread, where Python cannot set handlers, nothing changes.

    :param signals: the signals to handle
    :return: (yields) the list of the signals received in the block, filled as they arrive
    """
    received: list[signal.Signals] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(number: int, frame: types.FrameType | None) -> None:
        received.append(signal.Signals(number))
        if len(received) == 1:
            raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in signals}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


class TRPOExperimentManager(ExperimentManager):
    """
    The RL Zoo's experiment manager, with these additions.

    - If setting up the experiment fails (a hyperparameter value the algorithm rejects, an environment that cannot be
      created), the folders it created are removed, so no half-written run is left behind, and the error is raised as
      a one-line ``ConfigError``.
    - After saving the final model (and its ``VecNormalize`` statistics), the model is evaluated over
      ``n_final_eval_episodes`` episodes on a test environment built like ``enjoy`` builds it (saved statistics
      loaded, not updated, rewards not normalized), and one line reports the mean and std of the returns.
    - An interrupt during training, Ctrl-C (SIGINT) or SIGTERM (which the Zoo leaves to end the process, unsaved), saves
      the model as the Zoo saves it after Ctrl-C, skips the final evaluation and raises :class:`TrainingInterrupted`
      saying where the model is. An error during training saves the model (with the policy as before the update that
      failed: the update restores it) before it is raised, so that a long run is not lost to one bad update.
    - The hyperparameters' types are checked against the algorithm's constructor (:func:`check_hyperparameter_types`)
      once the Zoo has preprocessed them.
    - With ``n_trial_seeds`` > 1, each Optuna trial trains its hyperparameters ``n_trial_seeds`` times, on seeds
      ``seed``, ``seed + 1``, ..., and its value is the mean of the runs' values (each the Zoo's objective: its last
      evaluation); the values are kept in the trial's user attribute ``seed_values``. The Zoo's objective is one run,
      and on a task whose runs spread widely the best of many single runs is mostly the luck of its run. The pruner
      sees the first run's evaluations only.
    """

    n_final_eval_episodes: ClassVar[int] = 10
    #: training runs per Optuna trial, on consecutive seeds from ``--seed`` (1: the Zoo's objective, unseeded)
    n_trial_seeds: ClassVar[int] = 1
    #: whether this process saves and evaluates the trained model (False on the other ranks of a data-parallel job)
    saves_model: ClassVar[bool] = True
    #: the signal that interrupted training (set by ``learn``), None when it was not interrupted
    interrupted_by: signal.Signals | None = None

    def objective(self, trial: optuna.Trial) -> float:
        if self.n_trial_seeds == 1:
            return super().objective(trial)
        first_seed, values = self.seed, []
        try:
            for index in range(self.n_trial_seeds):
                self.seed = first_seed + index
                set_random_seed(self.seed)  # the Zoo builds the trial's model unseeded: its weights draw from here
                # The same trial: its hyperparameters are sampled once and read back; the pruner sees the first run
                run_trial = trial if index == 0 else cast(optuna.Trial, _UnprunedTrial(trial))
                values.append(float(super().objective(run_trial)))
        finally:
            self.seed = first_seed
        trial.set_user_attr("seed_values", values)
        return float(np.mean(values))

    def setup_experiment(self) -> tuple[BaseAlgorithm, dict[str, Any]] | None:
        # Deepest first, so that removing them in order leaves no empty parent that this run created
        new_folders = [path for path in (self.save_path, self.log_path, self.log_folder) if not os.path.exists(path)]
        try:
            return super().setup_experiment()
        except Exception as error:
            for path in new_folders:
                shutil.rmtree(path, ignore_errors=True)
            algorithm = ALGORITHMS[self.algo].class_name if self.algo in ALGORITHMS else self.algo
            message = str(error) if isinstance(error, ConfigError) else _one_line(error)
            raise ConfigError(f"cannot set up {algorithm} on {self.env_name.gym_id}: {message}") from error

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # The RL Zoo's own trpo.yml was tuned for sb3-contrib's TRPO: its entries keep sb3-contrib's trust region
        # (saved with the run's config.yml too)
        hyperparams, saved_hyperparams = super().read_hyperparameters()
        zoo_trust_region(hyperparams, self.algo, self.config)
        zoo_trust_region(saved_hyperparams, self.algo, self.config)
        return hyperparams, saved_hyperparams

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> Any:
        processed, *others = super()._preprocess_hyperparams(hyperparams)
        if self.algo in ALGORITHMS:
            check_hyperparameter_types(processed, self.algo)
        return (processed, *others)

    def learn(self, model: BaseAlgorithm) -> None:
        # The Zoo's learn() ends training on a KeyboardInterrupt (Ctrl-C) and closes the env; SIGTERM is made one too
        with signals_raise_keyboard_interrupt() as received:
            try:
                super().learn(model)
            except KeyboardInterrupt:
                pass  # raised in the Zoo's cleanup, after model.learn: saved as after any interrupt
            except Exception as error:
                self._save_after_error(model, error)
                raise
        self.interrupted_by = received[0] if received else None

    def _model_path(self) -> str:
        return os.path.join(self.save_path, f"{self.env_name}.zip")

    def _save_after_error(self, model: BaseAlgorithm, error: Exception) -> None:
        """
        Save the model that training stopped on with an error (the Zoo would lose it), and say so on stderr.

        :param model: the model
        :param error: the error, raised again by the caller
        """
        if not self.saves_model:
            return
        try:
            super().save_trained_model(model)
        except Exception as save_error:
            print(f"Training failed and the model could not be saved: {_one_line(save_error)}", file=sys.stderr)
            return
        print(
            f"Training failed at step {model.num_timesteps} of {self.n_timesteps} ({_one_line(error)}); the model is "
            f"saved in {self._model_path()}, its policy as before the update that failed",
            file=sys.stderr,
        )

    def create_callbacks(self) -> None:
        if self.algo not in MASKABLE_ALGORITHMS:
            return super().create_callbacks()
        # The Zoo's callbacks, its EvalCallback replaced by a MaskableEvalCallback (sb3-contrib's arguments), which
        # evaluates under the eval env's action masks and keeps a recurrent policy's memory
        zoo_eval_callback = rl_zoo3.exp_manager.EvalCallback
        rl_zoo3.exp_manager.EvalCallback = MaskableEvalCallback  # type: ignore[misc]
        try:
            return super().create_callbacks()
        finally:
            rl_zoo3.exp_manager.EvalCallback = zoo_eval_callback  # type: ignore[misc]

    def save_trained_model(self, model: BaseAlgorithm) -> None:
        if not self.saves_model:
            return
        super().save_trained_model(model)
        if self.interrupted_by is not None:
            raise TrainingInterrupted(
                self.interrupted_by,
                f"training stopped by {self.interrupted_by.name} at step {model.num_timesteps} of {self.n_timesteps}; "
                f"the model is saved in "
                f"{self._model_path()} (final evaluation skipped; train on from it with -i {self._model_path()})",
            )
        if self.n_final_eval_episodes > 0:
            mean_reward, std_reward = self.evaluate_final_model(model, self.n_final_eval_episodes)
            mode = "" if self.deterministic_eval else " (stochastic actions)"
            print(
                f"Evaluation of the final model over {self.n_final_eval_episodes} episodes{mode}: "
                f"mean_reward={mean_reward:.2f} +/- {std_reward:.2f}"
            )

    def evaluate_final_model(self, model: BaseAlgorithm, n_episodes: int) -> tuple[float, float]:
        """
        Evaluate a model on a test environment built from the run's saved configuration (as ``enjoy`` does).

        :param model: the trained model
        :param n_episodes: number of episodes
        :return: mean and standard deviation of the episode returns
        """
        hyperparams, stats_path = get_saved_hyperparams(self.params_path, test_mode=True)
        env = create_test_env(
            self.env_name.gym_id,
            n_envs=1,
            stats_path=stats_path,
            seed=self.seed,
            should_render=False,
            hyperparams=hyperparams,
            env_kwargs=self.eval_env_kwargs,
            vec_env_cls=DummyVecEnv,
        )
        evaluate = evaluate_maskable_policy if ALGORITHMS[self.algo].maskable else evaluate_policy
        try:
            returns, _ = evaluate(
                model,
                env,
                n_eval_episodes=n_episodes,
                deterministic=self.deterministic_eval,
                return_episode_rewards=True,
            )
        finally:
            env.close()
        return float(np.mean(returns)), float(np.std(returns))


def experiment_manager_class(
    n_final_eval_episodes: int,
    vec_env: str | None = None,
    data_parallel_rank: int | None = None,
    n_trial_seeds: int = 1,
) -> type[TRPOExperimentManager]:
    """
    A ``TRPOExperimentManager`` class for one run (the Zoo's ``train()`` creates the manager itself).

    :param n_final_eval_episodes: episodes of the final evaluation, 0 to skip it
    :param vec_env: ``"envpool"`` for EnvPool's envs (:mod:`sb3_trpo.envpool_vec_env`), None for the Zoo's ``--vec-env``
    :param data_parallel_rank: this process's rank in a data-parallel job (``torchrun``), None otherwise: the model
        gets ``data_parallel=True``; rank 0 alone writes the run's folder, evaluates, checkpoints, saves and shows the
        progress bar (the other ranks write to a temporary folder and do none of that). ``-n``, ``--eval-freq`` and
        ``--save-freq`` count the steps of all ranks, as the model's ``num_timesteps`` does
    :param n_trial_seeds: training runs per Optuna trial (``-optimize``), on seeds ``--seed``, ``--seed`` + 1, ...;
        the trial's value is their mean (1: the Zoo's objective)
    :return: the class
    """

    class RunExperimentManager(TRPOExperimentManager):
        def __init__(self, args: Any, algo: str, env_id: str, log_folder: str, *rest: Any, **kwargs: Any) -> None:
            if data_parallel_rank:
                # The Zoo's train() passes (..., log_folder, tensorboard_log, n_timesteps, eval_freq, eval_episodes,
                # save_freq, ...) positionally: no tensorboard, evaluation or checkpoint on the other ranks
                log_folder = tempfile.mkdtemp(prefix=f"sb3_trpo_rank{data_parallel_rank}_")
                atexit.register(shutil.rmtree, log_folder, True)
                rest = ("", rest[1], -1, rest[3], -1, *rest[5:])
                kwargs["verbose"], kwargs["show_progress"] = 0, False
            if vec_env == "envpool":
                # The Zoo's parser knows dummy and subproc only (the CLI takes envpool out of its arguments): args.yml
                # records the run's
                args = argparse.Namespace(**{**vars(args), "vec_env": vec_env})
            super().__init__(args, algo, env_id, log_folder, *rest, **kwargs)

        def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> Any:
            processed, *others = super()._preprocess_hyperparams(hyperparams)
            if data_parallel_rank is not None:
                processed["data_parallel"] = True
            return (processed, *others)

        def create_callbacks(self) -> None:
            if data_parallel_rank is None:
                return super().create_callbacks()
            # The model counts the steps of all ranks, and so do --eval-freq and --save-freq: the Zoo divides them by
            # one rank's n_envs to get the calls of its callbacks, each call one step of every rank's envs
            world_size = dist.get_world_size()
            self.eval_freq, self.save_freq = (
                max(frequency // world_size, 1) if frequency > 0 else frequency
                for frequency in (self.eval_freq, self.save_freq)
            )
            super().create_callbacks()
            self.callbacks = [
                AllRanksProgressBar(world_size) if type(callback) is ProgressBarCallback else callback
                for callback in self.callbacks
            ]

    RunExperimentManager.saves_model = not data_parallel_rank
    RunExperimentManager.n_final_eval_episodes = n_final_eval_episodes
    RunExperimentManager.n_trial_seeds = n_trial_seeds
    if vec_env == "envpool":
        from sb3_trpo.envpool_vec_env import envpool_vec_env_cls

        # The Zoo's own hook: the class make_vec_env builds the training and evaluation envs with
        RunExperimentManager.default_vec_env_cls = staticmethod(envpool_vec_env_cls)  # type: ignore[assignment]
    return RunExperimentManager
