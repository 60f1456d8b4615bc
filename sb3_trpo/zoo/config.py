"""
Hyperparameter files in the RL Zoo's schema, and the checks of a run's configuration that ``python -m sb3_trpo train``
makes before the Zoo creates any folder, each problem told in one line (:class:`ConfigError`).

It imports nothing heavy (yaml, gymnasium, difflib and the Zoo are imported by the functions that use them), so that
the CLI can name its errors without slowing ``--help``.
"""

import collections.abc
import inspect
import numbers
import re
import types
import typing
from pathlib import Path
from typing import Any

import sb3_trpo
from sb3_trpo.zoo.registry import ALGORITHMS, DEFAULT_ALGO, MASKABLE_ALGORITHMS

# What to install for the Zoo workflow, and for the EnvPool backend
EXTRA_INSTALL = 'pip install "sb3_trpo[extra]"'
ENVPOOL_INSTALL = 'pip install "sb3_trpo[envpool]"'
#: ``-conf`` value that stands for the RL Zoo's own hyperparameter file of the algorithm (``rl_zoo3/hyperparams/``)
RL_ZOO_CONFIG = "rl_zoo3"
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
# The Zoo's own keys that it reads as numbers (an int() or a comparison of another type fails without naming them)
ZOO_NUMBER_KEYS = {"n_envs": int, "n_timesteps": float}


class ConfigError(ValueError):
    """A problem with a run's configuration (environment id, hyperparameter file or entry), told in one line."""


class MissingDependencyError(ConfigError):
    """The environment needs an optional package that is not installed."""


def algorithm_class(algo: str) -> type[Any]:
    """
    The class behind an ``--algo`` name (imported on this call).

    :param algo: a name of :data:`~sb3_trpo.zoo.registry.ALGORITHMS`
    :return: the algorithm class
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown --algo {algo!r}; choose from {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo].load()


def default_config_path(algo: str = DEFAULT_ALGO) -> Path:
    """
    The hyperparameter file used when the user gives no ``-conf``: ``zoo_configs/<algo>.yml``, at the top of the
    repository; an installed package holds it as ``sb3_trpo/zoo_configs/<algo>.yml`` (pyproject.toml's package-dir).

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


def rl_zoo_config_path(algo: str = DEFAULT_ALGO) -> Path:
    """The RL Zoo's own hyperparameter file of an algorithm of the Zoo (``trpo``, ``ppo``, ...), installed with it."""
    import rl_zoo3

    return Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml"


def zoo_trust_region(hyperparams: dict[str, Any], algo: str, config: str | Path) -> dict[str, Any]:
    """
    The entries of the RL Zoo's own ``hyperparams/trpo.yml`` were tuned for sb3-contrib's TRPO: with ``--algo trpo``
    they get ``kl_constraint: sb3_contrib`` unless they name one, so that their values mean the trust region they were
    tuned with.

    :param hyperparams: an entry of ``config`` (with the ``-params`` overrides, which may name ``kl_constraint``),
        updated in place
    :param algo: ``--algo`` name
    :param config: the hyperparameter file
    :return: ``hyperparams``
    """
    if algo == "trpo" and Path(config).resolve() == rl_zoo_config_path("trpo"):
        hyperparams.setdefault("kl_constraint", "sb3_contrib")
    return hyperparams


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read the hyperparameter file {path}: {error.strerror}") from None


def load_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """
    Read a hyperparameter file in the RL Zoo's schema (a mapping from environment ids to entries).

    :param path: path of the YAML file
    :return: the entries, as ``yaml.safe_load`` returns them (anchors merged, ``!!float`` converted)
    """
    import yaml

    try:
        config = yaml.safe_load(_read(path))
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
    marks, previous = {}, ""
    for line in _read(path).splitlines():
        match = re.match(r"^([\w/.-]+):", line)
        if match is not None and previous.startswith("#"):
            marks[match.group(1)] = previous
        if line.strip():
            previous = line
    return marks


def _did_you_mean(name: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_env_id(env_id: str) -> None:
    """Check that ``env_id`` is registered in Gymnasium (after the Zoo's and ``--gym-packages``'s registrations)."""
    import gymnasium as gym

    if env_id not in gym.envs.registry:
        hint = _did_you_mean(env_id, list(gym.envs.registry))
        raise ConfigError(f"unknown environment id {env_id!r} (not in the Gymnasium registry){hint}")


def check_env_dependencies(env_id: str) -> None:
    """Create the environment once, to report a missing optional package (MuJoCo, Box2D, Atari) in one line."""
    import gymnasium as gym

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
    from rl_zoo3.exp_manager import ExperimentManager

    if env_id in config:
        key = env_id
    elif ExperimentManager.is_atari(env_id):
        key = "atari"
    else:
        key = "default"
    if key not in config:
        raise ConfigError(f"no entry for {env_id!r} (nor {key!r}) in {config_name}; add one or pass another file with -conf")
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
            hint = _did_you_mean(name, sorted(arguments | ZOO_KEYS))
            raise ConfigError(f"unknown hyperparameter {name!r} for {algorithm.__name__} in {where}{hint}")
    if "policy" not in hyperparams:
        raise ConfigError(f"{where} has no 'policy' (e.g. policy: 'MlpPolicy')")


def _expected_type(annotation: Any) -> tuple[str, collections.abc.Callable[[Any], bool]]:
    # What an annotation asks for, in words and as a test of a value: numbers, strings, booleans, None, callables,
    # classes, containers and unions of them; any other form accepts every value (left to the constructor)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_expected_type(member) for member in typing.get_args(annotation)]
        names = list(dict.fromkeys(name for name, _ in members))
        name = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        return name, lambda value: any(accepts(value) for _, accepts in members)
    if annotation is None or annotation is type(None):
        return "None", lambda value: value is None
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return "a callable (a schedule of the progress remaining)", callable
    if origin is type:
        return "a class", lambda value: isinstance(value, type)
    if annotation is int:
        return "an integer", lambda value: isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return "a number", lambda value: isinstance(value, numbers.Real) and not isinstance(value, bool)
    base = origin if isinstance(origin, type) else annotation
    words = {bool: "true or false", str: "a string", dict: "a dict", list: "a list"}
    name = words.get(base, f"a {getattr(base, '__name__', str(base))}")
    if isinstance(base, type) and base is not Any:
        return name, lambda value: isinstance(value, base)
    return name, lambda value: True


def _check_type(name: str, value: Any, annotation: Any, where: str) -> None:
    expected, accepts = _expected_type(annotation)
    if not accepts(value):
        raise ConfigError(f"{name} {where} must be {expected}, got {value!r} ({type(value).__name__})")


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
        if parameter is not None and parameter.annotation is not inspect.Parameter.empty:
            _check_type(f"hyperparameter {name}", value, parameter.annotation, f"of {algorithm.__name__}")


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
        if name in hyperparams:
            where = "in -params" if overrides and name in overrides else f"in the entry {key!r} of {conf_file}"
            _check_type(name, hyperparams[name], annotation, where)
    if n_timesteps <= 0 and "n_timesteps" not in hyperparams:
        raise ConfigError(f"the entry {key!r} of {conf_file} has no 'n_timesteps'; add it or pass -n N")
    return hyperparams
