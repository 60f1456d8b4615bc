"""
``python -m sb3_trpo train|enjoy``: the RL Zoo's scripts on sb3_trpo's algorithms, with the run checked first (see
``USAGE`` and docs/guide/rl_zoo.md). Printing the help imports neither torch nor the Zoo: the train options are listed
here (:func:`train_parser`), and a command imports the Zoo and calls :func:`sb3_trpo.zoo.register` when it runs.
"""

import argparse
import contextlib
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from sb3_trpo.zoo import config
from sb3_trpo.zoo.registry import ALGORITHMS, DEFAULT_ALGO, MASKABLE_ALGORITHMS, register

# Exit codes: a problem with the user's input, a missing optional dependency
EXIT_BAD_INPUT = 2
EXIT_MISSING_DEPENDENCY = 3
# --vec-env: the Zoo's two, and EnvPool (sb3_trpo.zoo.envpool)
VEC_ENVS = ("dummy", "subproc", "envpool")

USAGE = f"""usage: python -m sb3_trpo {{train,enjoy}} [options]

Train, tune and watch sb3_trpo's algorithms with the RL Zoo (rl_zoo3).

commands:
  train   train (or, with -optimize, tune) on one environment; options of `python -m rl_zoo3.train`
          (--algo {", ".join(ALGORITHMS)}; default {DEFAULT_ALGO}) plus --final-eval-episodes N (default 10)
          and, with -optimize, --trial-seeds N (runs per trial, default 1); see `python -m sb3_trpo train --help`
  enjoy   run a trained agent; options of `python -m rl_zoo3.enjoy` (default folder: logs)

example:
  python -m sb3_trpo train --env CartPole-v1 -n 20000 --progress
  python -m sb3_trpo enjoy --env CartPole-v1 -f logs --no-render
  python -m sb3_trpo train --algo npg --env Pendulum-v1
  python -m sb3_trpo train --env HalfCheetah-v5 --vec-env envpool   # EnvPool's envs: pip install "sb3_trpo[envpool]"
"""

TRAIN_DESCRIPTION = """\
Train (or, with -optimize, tune) one of sb3_trpo's algorithms on one environment with the RL Zoo (rl_zoo3): the
hyperparameters of zoo_configs/<algo>.yml, the model and logs in logs/<algo>/<env>_<n>/, then an evaluation of the
final model. Ctrl-C or SIGTERM saves the model there and exits with 130 or 143; an error during training saves the
model before it is raised."""

TRAIN_EPILOG = """\
examples:
  python -m sb3_trpo train --env CartPole-v1 -n 20000 --progress
  python -m sb3_trpo train --algo npg --env Pendulum-v1 -params target_kl:0.02 n_steps:1024
  python -m sb3_trpo train --env HalfCheetah-v5 --vec-env envpool
  python -m sb3_trpo train --env Pendulum-v1 -n 50000 -optimize --n-trials 20 --trial-seeds 2
  torchrun --standalone --nproc_per_node 2 -m sb3_trpo train --env Pendulum-v1   # data-parallel, 2 ranks"""


class CLIError(Exception):
    """
    A problem reported to the user in one line (``sb3_trpo <command>: <kind>: <message>``), with an exit code.

    :param message: the line
    :param exit_code: the exit code of the command
    :param kind: the word before the message: ``error``, or ``interrupted`` for a run stopped by a signal
    """

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT, kind: str = "error") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad option reported as a one-line ``CLIError`` (exit code 2) instead of usage lines."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(message)


def _choices(names: Sequence[str]) -> str:
    return "{" + ",".join(names) + "}"


def train_parser() -> argparse.ArgumentParser:
    """
    The options of ``train``: ours, then those of the RL Zoo's ``train.py`` (rl_zoo3 2.x; ``tests/test_cli.py`` checks
    them against the installed Zoo), listed here so that ``train --help`` imports no Zoo. ``--algo`` and ``--vec-env``
    list their values without enforcing them: :func:`parse_train_options` reports a wrong one with its hint.

    :return: the parser (``parse_known_args``: an option of another Zoo version passes through to the Zoo)
    """
    parser = _ArgumentParser(
        prog="python -m sb3_trpo train",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        allow_abbrev=False,
    )
    ours = parser.add_argument_group("options of sb3_trpo (added to the Zoo's, or changed)")
    ours.add_argument("-h", "--help", action="store_true", help="show this help message and exit")
    ours.add_argument(
        "--algo",
        default=DEFAULT_ALGO,
        metavar=_choices(list(ALGORITHMS)),
        help=", ".join(f"{name} ({entry.class_name})" for name, entry in ALGORITHMS.items())
        + f" (default {DEFAULT_ALGO}); the Zoo's other algorithms run with python -m rl_zoo3.train",
    )
    ours.add_argument(
        "-conf",
        "--conf-file",
        help="hyperparameter file (YAML, the Zoo's schema) or python module with a `hyperparams` dict (default: "
        "zoo_configs/<algo>.yml); rl_zoo3: the RL Zoo's own hyperparams/<algo>.yml, whose trpo.yml entries were tuned "
        "for sb3-contrib's TRPO and so get kl_constraint: sb3_contrib unless they name one",
    )
    ours.add_argument(
        "-n",
        "--n-timesteps",
        type=int,
        help="steps to train, > 0 (default: the entry's n_timesteps); under torchrun, the steps of all ranks",
    )
    ours.add_argument(
        "-params",
        "--hyperparams",
        nargs="+",
        metavar="KEY:VALUE",
        help="override hyperparameters of the entry, each KEY:VALUE with VALUE a Python expression "
        '(e.g. target_kl:0.02 n_steps:1024 policy_kwargs:"dict(net_arch=[64, 64])")',
    )
    ours.add_argument(
        "--vec-env",
        default="dummy",
        metavar=_choices(VEC_ENVS),
        help="VecEnv type: the Zoo's dummy (default) or subproc, or envpool (EnvPool's C++ envs; "
        'pip install "sb3_trpo[envpool]")',
    )
    ours.add_argument(
        "--final-eval-episodes",
        type=int,
        default=10,
        help="episodes of the evaluation of the final model (default 10; 0 skips it)",
    )
    ours.add_argument(
        "--trial-seeds",
        type=int,
        default=1,
        help="with -optimize: training runs per Optuna trial, on seeds --seed, --seed + 1, ...; the trial's value is "
        "their mean (default 1: the Zoo's one run)",
    )
    _add_zoo_train_options(parser.add_argument_group("options of the RL Zoo's train.py (passed to it unchanged)"))
    return parser


def _add_zoo_train_options(zoo: Any) -> None:
    # rl_zoo3 2.x's train.py, in its order, less those of train_parser's own group (their help as the Zoo's)
    zoo.add_argument("--env", default="CartPole-v1", help="environment ID")
    zoo.add_argument("-tb", "--tensorboard-log", help="Tensorboard log dir", default="")
    zoo.add_argument("-i", "--trained-agent", help="Path to a pretrained agent to continue training", default="")
    zoo.add_argument(
        "--truncate-last-trajectory",
        help="When using HER with online sampling the last trajectory in the replay buffer will be truncated after "
        "reloading the replay buffer.",
        default=True,
    )
    zoo.add_argument("--num-threads", help="Number of threads for PyTorch (-1 to use default)", default=-1, type=int)
    zoo.add_argument(
        "--log-interval",
        help="Override log interval (default: -1, no change, -2: no logging useful when using custom logging freq)",
        default=-1,
        type=int,
    )
    zoo.add_argument(
        "--eval-freq",
        help="Evaluate the agent every n steps (if negative, no evaluation). During hyperparameter optimization "
        "n-evaluations is used instead",
        default=25000,
        type=int,
    )
    zoo.add_argument(
        "--optimization-log-path",
        help="Path to save the evaluation log and optimal policy for each hyperparameter tried during optimization. "
        "Disabled if no argument is passed.",
    )
    zoo.add_argument("--eval-episodes", help="Number of episodes to use for evaluation", default=5, type=int)
    zoo.add_argument("--n-eval-envs", help="Number of environments for evaluation", default=1, type=int)
    zoo.add_argument("--save-freq", help="Save the model every n steps (if negative, no checkpoint)", default=-1, type=int)
    zoo.add_argument("--save-replay-buffer", help="Save the replay buffer too (when applicable)", action="store_true")
    zoo.add_argument("-f", "--log-folder", help="Log folder", default="logs")
    zoo.add_argument("--seed", help="Random generator seed", type=int, default=-1)
    zoo.add_argument("--device", help="PyTorch device to be use (ex: cpu, cuda...)", default="auto")
    zoo.add_argument(
        "--n-trials",
        help="Number of trials for optimizing hyperparameters. This applies to each optimization runner, not the entire "
        "optimization process.",
        type=int,
        default=500,
    )
    zoo.add_argument(
        "--max-total-trials",
        help="Number of (potentially pruned) trials for optimizing hyperparameters. This applies to the entire "
        "optimization process and takes precedence over --n-trials if set.",
        type=int,
    )
    zoo.add_argument(
        "-optimize", "--optimize-hyperparameters", action="store_true", dest="optimize", help="Run hyperparameters search"
    )
    zoo.add_argument("--no-optim-plots", action="store_true", help="Disable hyperparameter optimization plots")
    zoo.add_argument("--n-jobs", help="Number of parallel jobs when optimizing hyperparameters", type=int, default=1)
    zoo.add_argument(
        "--sampler", help="Sampler to use when optimizing hyperparameters", default="tpe", choices=["random", "tpe", "auto"]
    )
    zoo.add_argument(
        "--pruner",
        help="Pruner to use when optimizing hyperparameters",
        default="median",
        choices=["halving", "median", "none"],
    )
    zoo.add_argument("--n-startup-trials", help="Number of trials before using optuna sampler", type=int, default=10)
    zoo.add_argument(
        "--n-evaluations",
        help="Training policies are evaluated every n-timesteps // n-evaluations steps when doing hyperparameter "
        "optimization. Default is 1 evaluation per 100k timesteps.",
        type=int,
    )
    zoo.add_argument("--storage", help="Database storage path if distributed optimization should be used")
    zoo.add_argument("--study-name", help="Study name for distributed optimization")
    zoo.add_argument("--trial-id", help="Trial id to load for a Optuna storage.", type=int)
    zoo.add_argument("--verbose", help="Verbose mode (0: no output, 1: INFO)", default=1, type=int)
    zoo.add_argument(
        "--gym-packages", nargs="+", default=[], help="Additional external Gym environment package modules to import"
    )
    zoo.add_argument("--env-kwargs", nargs="+", help="Optional keyword argument to pass to the env constructor")
    zoo.add_argument(
        "--eval-env-kwargs", nargs="+", help="Optional keyword argument to pass to the env constructor for evaluation"
    )
    zoo.add_argument("-uuid", "--uuid", action="store_true", help="Ensure that the run has a unique ID")
    zoo.add_argument(
        "--track", action="store_true", help="if toggled, this experiment will be tracked with Weights and Biases"
    )
    zoo.add_argument("--wandb-project-name", default="sb3", help="the wandb's project name")
    zoo.add_argument("--wandb-entity", help="the entity (team) of wandb's project")
    zoo.add_argument("--wandb-group", help="the wandb's group name")
    zoo.add_argument("-P", "--progress", action="store_true", help="if toggled, display a progress bar using tqdm and rich")
    zoo.add_argument("-tags", "--wandb-tags", default=[], nargs="+", help="Tags for wandb run, e.g.: -tags optimized pr-123")


def _check_override_form(pairs: Sequence[str]) -> None:
    # The Zoo reads `key:value` (split at the first colon); anything else would reach its eval() as a bare SyntaxError
    for pair in pairs:
        key, colon, _ = pair.partition(":")
        if colon and key.isidentifier():
            continue
        name, equals, value = pair.partition("=")
        fix = f"write {name}:{value}" if equals and name.isidentifier() else "e.g. target_kl:0.02"
        raise CLIError(f"-params/--hyperparams takes KEY:VALUE pairs, got {pair!r} ({fix})")


def evaluate_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """
    Evaluate ``-params`` pairs with the syntax and evaluation of the Zoo's ``StoreDict`` (``key:python_expression``),
    one pair at a time so that an error names its key.

    :param pairs: ``key:value`` strings (of the checked form)
    :return: the overrides
    """
    from rl_zoo3.utils import StoreDict

    overrides: dict[str, Any] = {}
    for pair in pairs:
        namespace = argparse.Namespace()
        try:
            StoreDict(option_strings=["-params"], dest="hyperparams")(argparse.ArgumentParser(), namespace, [pair])
        except Exception as error:
            key, _, value = pair.partition(":")
            message = " ".join(str(error).split())
            raise CLIError(
                f"-params: the value of {key} must be a Python expression (quote a string: {key}:\"'text'\"), "
                f"got {value!r}: {type(error).__name__}: {message}"
            ) from None
        overrides.update(namespace.hyperparams)
    return overrides


def parse_train_options(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """
    Read and check the options of ``train``, and remove ours (``--final-eval-episodes``, ``--trial-seeds``,
    ``--vec-env envpool``) from the rest. Imports nothing heavy: a bad option fails fast.

    :param argv: the arguments after ``train``
    :return: the options (``n_timesteps`` -1 when not given) and the arguments for ``rl_zoo3.train``
    """
    namespace, _ = train_parser().parse_known_args(argv)
    if namespace.vec_env not in VEC_ENVS:
        raise CLIError(f"--vec-env must be one of {', '.join(VEC_ENVS)}, got {namespace.vec_env!r}")
    _check_algo(namespace.algo, "python -m rl_zoo3.train")
    if namespace.n_timesteps is not None and namespace.n_timesteps <= 0:
        raise CLIError(
            f"-n/--n-timesteps must be a number of steps > 0, got {namespace.n_timesteps} "
            "(leave it out to train the entry's n_timesteps)"
        )
    if namespace.hyperparams is not None:
        _check_override_form(namespace.hyperparams)
    if namespace.final_eval_episodes < 0:
        raise CLIError(f"--final-eval-episodes must be >= 0 (0 skips the evaluation), got {namespace.final_eval_episodes}")
    if namespace.trial_seeds < 1:
        raise CLIError(f"--trial-seeds must be >= 1 (training runs per Optuna trial), got {namespace.trial_seeds}")
    if namespace.trial_seeds > 1 and not namespace.optimize:
        raise CLIError("--trial-seeds is for tuning (runs per Optuna trial): add -optimize, or leave it out")
    if namespace.trial_seeds > 1 and namespace.n_jobs != 1:
        raise CLIError(
            "--trial-seeds seeds each run of a trial, which trials run in threads (--n-jobs > 1) would share: "
            "use --n-jobs 1, and several worker processes on one --storage for parallel tuning"
        )
    # Ours, removed from what the Zoo parses: --final-eval-episodes, --trial-seeds, and --vec-env envpool (the Zoo
    # knows dummy/subproc)
    ours = ["--final-eval-episodes", "--trial-seeds"] + (["--vec-env"] if namespace.vec_env == "envpool" else [])
    zoo_argv = []
    skip = 0
    for argument in argv:
        if skip:
            skip -= 1
        elif argument in ours:
            skip = 1
        elif not any(argument.startswith(f"{option}=") for option in ours):
            zoo_argv.append(argument)
    if namespace.n_timesteps is None:
        namespace.n_timesteps = -1
    return namespace, zoo_argv


def _check_algo(algo: str, zoo_script: str) -> None:
    if algo not in ALGORITHMS:
        raise CLIError(
            f"python -m sb3_trpo runs --algo {', '.join(ALGORITHMS)} (got --algo {algo}); for others use {zoo_script}"
        )


def _with_algo(argv: Sequence[str], algo: str) -> list[str]:
    # The Zoo's own --algo default is a2c: give it ours (trpo) unless the user named one
    has_algo = any(argument == "--algo" or argument.startswith("--algo=") for argument in argv)
    return list(argv) if has_algo else ["--algo", algo, *argv]


def _register_zoo() -> None:
    """Register sb3_trpo's algorithms in the RL Zoo (:func:`sb3_trpo.zoo.register`), or say which package is missing."""
    try:
        import rl_zoo3  # noqa: F401 (first, so that a missing Zoo is named as such)

        register()
    except ModuleNotFoundError as error:
        package = (error.name or "sb3_trpo").split(".")[0]
        if package == "sb3_trpo":
            raise
        message = f"the RL Zoo workflow needs the optional package {package!r}; install it with: {config.EXTRA_INSTALL}"
        raise CLIError(message, EXIT_MISSING_DEPENDENCY) from None


def _import_gym_packages(modules: Sequence[str]) -> None:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise CLIError(f"cannot import --gym-packages module {module!r}: {error}") from None


@contextlib.contextmanager
def _zoo_script(prog: str, argv: Sequence[str], module: types.ModuleType, **replaced: Any) -> Iterator[None]:
    """
    Run a Zoo script's function (which parses ``sys.argv``) as ``prog argv``, with the ``replaced`` globals of its
    ``module`` for the call and everything restored afterwards. The Zoo has no hook for the experiment manager that
    ``rl_zoo3.train.train()`` creates, nor for the env and model that ``rl_zoo3.enjoy.enjoy()`` uses: this is the one
    place where sb3_trpo.zoo replaces attributes of another library.
    """
    saved = {name: getattr(module, name) for name in replaced}
    old_argv, sys.argv = sys.argv, [prog, *argv]
    for name, value in replaced.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        sys.argv = old_argv
        for name, value in saved.items():
            setattr(module, name, value)


def train(argv: Sequence[str]) -> None:
    """
    ``python -m sb3_trpo train``: ``rl_zoo3.train`` with sb3_trpo's TRPO, checks first, and a final evaluation.

    :param argv: the arguments after ``train``
    """
    if any(argument in ("-h", "--help") for argument in argv):
        print(train_parser().format_help())
        return

    options, zoo_argv = parse_train_options(argv)
    _register_zoo()
    import rl_zoo3.train

    from sb3_trpo.zoo.manager import TrainingInterrupted, experiment_manager_class

    overrides = None if options.hyperparams is None else evaluate_overrides(options.hyperparams)
    _import_gym_packages(options.gym_packages)
    if options.trained_agent and not (options.trained_agent.endswith(".zip") and os.path.isfile(options.trained_agent)):
        raise CLIError(f"--trained-agent {options.trained_agent} is not a saved model (.zip file)")
    conf_file = options.conf_file
    if conf_file is None:
        conf_file = str(config.default_config_path(options.algo))
        zoo_argv = ["--conf-file", conf_file, *zoo_argv]
    elif conf_file == config.RL_ZOO_CONFIG:
        conf_file = str(config.rl_zoo_config_path(options.algo))
        if not os.path.isfile(conf_file):
            raise CLIError(f"-conf rl_zoo3: the RL Zoo has no hyperparameter file for --algo {options.algo}")
        # (after the user's -conf rl_zoo3: the last one counts)
        zoo_argv = [*zoo_argv, "--conf-file", conf_file]
    config.check_run(options.env, conf_file, overrides, options.n_timesteps, options.algo, options.optimize)
    if options.vec_env == "envpool":
        try:
            import envpool  # noqa: F401 (only checks that it is installed)
        except ImportError:
            message = f"--vec-env envpool needs the optional package 'envpool'; install it with: {config.ENVPOOL_INSTALL}"
            raise CLIError(message, EXIT_MISSING_DEPENDENCY) from None
    # Under torchrun (WORLD_SIZE > 1): one rank of a data-parallel job (sb3_trpo.common.distributed)
    rank = _init_data_parallel(options) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    manager_class = experiment_manager_class(options.final_eval_episodes, options.vec_env, rank, options.trial_seeds)
    try:
        with _zoo_script(
            "python -m sb3_trpo train", _with_algo(zoo_argv, options.algo), rl_zoo3.train, ExperimentManager=manager_class
        ):
            rl_zoo3.train.train()
    except TrainingInterrupted as interrupted:
        # The model is saved: exit as a shell expects of a command stopped by that signal (130: SIGINT, 143: SIGTERM)
        raise CLIError(str(interrupted), 128 + interrupted.signal, kind="interrupted") from None
    finally:
        if rank is not None:
            from sb3_trpo.common.distributed import close_process_group

            close_process_group()


def _init_data_parallel(options: argparse.Namespace) -> int:
    """Join the torchrun job this process was launched in (gloo on CPU, NCCL on a GPU) and return its rank."""
    import torch as th
    import torch.distributed as dist

    if options.optimize:  # (each trial would be one data-parallel job)
        raise CLIError("-optimize cannot run under torchrun: start several tuning workers on a shared --storage instead")
    use_cuda = options.device.startswith("cuda") or (options.device == "auto" and th.cuda.is_available())
    if use_cuda:
        th.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank()


def enjoy(argv: Sequence[str]) -> None:
    """
    ``python -m sb3_trpo enjoy``: ``rl_zoo3.enjoy`` on an agent trained by ``train`` (default folder ``logs``).

    :param argv: the arguments after ``enjoy``
    """
    _register_zoo()
    import rl_zoo3.enjoy

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--algo", default=DEFAULT_ALGO)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--folder")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    namespace, _ = parser.parse_known_args(argv)
    _check_algo(namespace.algo, "python -m rl_zoo3.enjoy")
    zoo_argv = _with_algo(argv, namespace.algo)
    if namespace.folder is None:
        zoo_argv += ["--folder", "logs"]
    if not any(argument in ("-h", "--help") for argument in argv):
        _import_gym_packages(namespace.gym_packages)
        config.check_env_id(namespace.env)
    try:
        with _zoo_script("python -m sb3_trpo enjoy", zoo_argv, rl_zoo3.enjoy, **_predict_under_masks(namespace.algo)):
            rl_zoo3.enjoy.enjoy()
    except (AssertionError, ValueError) as error:
        # The Zoo reports a missing run folder or model file this way
        raise CLIError(
            f"cannot load a trained {namespace.algo.upper()} agent for {namespace.env} from {namespace.folder or 'logs'}: "
            f"{' '.join(str(error).split())} (train one with: python -m sb3_trpo train --algo {namespace.algo} "
            f"--env {namespace.env})"
        ) from None


def _predict_under_masks(algo: str) -> dict[str, Any]:
    """
    For a maskable algorithm, what :func:`_zoo_script` replaces in ``rl_zoo3.enjoy`` so that its loop predicts under the
    test env's action masks: its ``create_test_env`` notes the env it creates, and its ``ALGOS`` (a copy: the Zoo's
    table is left as it is) loads the model seen through :class:`~sb3_trpo.common.evaluation.MaskedPredictor` on it.

    :param algo: ``--algo``
    :return: the replaced globals of ``rl_zoo3.enjoy`` by name (none for the other algorithms)
    """
    if algo not in MASKABLE_ALGORITHMS:
        return {}
    import rl_zoo3.enjoy

    from sb3_trpo.common.evaluation import MaskedPredictor

    test_envs: list[Any] = []
    create_test_env, algorithm = rl_zoo3.enjoy.create_test_env, rl_zoo3.enjoy.ALGOS[algo]

    def noting_create_test_env(*args: Any, **kwargs: Any) -> Any:
        test_envs.append(create_test_env(*args, **kwargs))
        return test_envs[-1]

    def load_under_masks(*args: Any, **kwargs: Any) -> MaskedPredictor:
        return MaskedPredictor(algorithm.load(*args, **kwargs), test_envs[-1])

    under_masks = types.SimpleNamespace(load=load_under_masks)
    return {"create_test_env": noting_create_test_env, "ALGOS": {**rl_zoo3.enjoy.ALGOS, algo: under_masks}}


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {"train": train, "enjoy": enjoy}


def main(argv: Sequence[str] | None = None) -> int:
    """
    Entry point of ``python -m sb3_trpo``.

    :param argv: command line arguments without the program name (default: ``sys.argv[1:]``)
    :return: exit code (0: success, 2: bad input, 3: missing optional dependency, 130 / 143: training interrupted by
        SIGINT (Ctrl-C) / SIGTERM, the model saved)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else EXIT_BAD_INPUT
    command, *rest = argv
    if command not in COMMANDS:
        print(f"sb3_trpo: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        COMMANDS[command](rest)
    except CLIError as error:
        print(f"sb3_trpo {command}: {error.kind}: {error}", file=sys.stderr)
        return error.exit_code
    except config.ConfigError as error:  # (the checks of sb3_trpo.zoo.config, and a failed setup)
        print(f"sb3_trpo {command}: error: {error}", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY if isinstance(error, config.MissingDependencyError) else EXIT_BAD_INPUT
    return 0
