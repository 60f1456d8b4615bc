"""
The RL Zoo's experiment manager with our additions (:class:`TRPOExperimentManager`), and its class for one
``python -m sb3_trpo train`` run (:func:`experiment_manager_class`: EnvPool, data-parallel ranks).
"""

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import types
from collections.abc import Iterator
from typing import Any, ClassVar, cast

import numpy as np
import optuna
import torch.distributed as dist
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import create_test_env, get_saved_hyperparams
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback, ProgressBarCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_trpo.common.distributed import AllRanksProgressBar
from sb3_trpo.common.evaluation import MaskableEvalCallback
from sb3_trpo.common.evaluation import evaluate_policy as evaluate_maskable_policy
from sb3_trpo.zoo.config import ConfigError, check_hyperparameter_types, zoo_trust_region
from sb3_trpo.zoo.registry import ALGORITHMS, MASKABLE_ALGORITHMS


class TrainingInterrupted(Exception):
    """
    Training stopped by a signal (SIGINT, SIGTERM) and the model saved: raised after the save, to end the command.

    :param received: the signal
    :param message: what was saved where, in one line
    """

    def __init__(self, received: signal.Signals, message: str) -> None:
        super().__init__(message)
        self.signal = int(received)


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
def signals_raise_keyboard_interrupt() -> Iterator[list[signal.Signals]]:
    """
    While in the block, the first SIGINT or SIGTERM received raises ``KeyboardInterrupt`` (for SIGTERM too, which would
    otherwise end the process unsaved); later ones are only recorded, so that the cleanup is not cut short. Outside the
    main thread, where Python cannot set handlers, nothing changes.

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

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


class TRPOExperimentManager(ExperimentManager):
    """
    The RL Zoo's experiment manager, with these additions:

    - a failed setup removes the folders it created and is raised as a one-line :class:`ConfigError`;
    - the hyperparameters' types are checked against the constructor once the Zoo has preprocessed them;
    - the final model is evaluated over ``n_final_eval_episodes`` episodes on a test env built as ``enjoy`` builds it;
    - SIGINT or SIGTERM during training saves the model, skips the final evaluation and raises
      :class:`TrainingInterrupted`; an error during training saves the model (its policy as before the update that
      failed) before it is raised;
    - with ``n_trial_seeds`` > 1, each Optuna trial trains on seeds ``seed``, ``seed + 1``, ..., and its value is the
      mean of the runs' (kept in the trial's user attribute ``seed_values``); the pruner sees the first run only;
    - with a maskable algorithm, evaluations during training take the eval env's action masks;
    - with ``data_parallel_rank`` set (``torchrun``), the model gets ``data_parallel=True``; rank 0 alone writes the
      run's folder, evaluates, checkpoints, saves and shows the progress bar (the other ranks write to a temporary
      folder and do none of that). ``-n``, ``--eval-freq`` and ``--save-freq`` count the steps of all ranks, as the
      model's ``num_timesteps`` does;
    - with ``vec_env`` ``"envpool"``, the envs are EnvPool's (:mod:`sb3_trpo.zoo.envpool`).

    :func:`experiment_manager_class` sets these class attributes for one run (the Zoo's ``train()`` creates the manager).
    """

    #: episodes of the final evaluation, 0 to skip it
    n_final_eval_episodes: ClassVar[int] = 10
    #: training runs per Optuna trial, on consecutive seeds from ``--seed`` (1: the Zoo's objective, unseeded)
    n_trial_seeds: ClassVar[int] = 1
    #: this process's rank in a data-parallel job, None outside one
    data_parallel_rank: ClassVar[int | None] = None
    #: ``"envpool"`` for EnvPool's envs, None for the Zoo's ``--vec-env``
    vec_env: ClassVar[str | None] = None
    #: the signal that interrupted training (set by ``learn``), None when it was not interrupted
    interrupted_by: signal.Signals | None = None

    def __init__(self, args: Any, algo: str, env_id: str, log_folder: str, *rest: Any, **kwargs: Any) -> None:
        if self.data_parallel_rank:
            # The Zoo's train() passes (..., log_folder, tensorboard_log, n_timesteps, eval_freq, eval_episodes,
            # save_freq, ...) positionally: no tensorboard, evaluation or checkpoint on the other ranks
            log_folder = tempfile.mkdtemp(prefix=f"sb3_trpo_rank{self.data_parallel_rank}_")
            atexit.register(shutil.rmtree, log_folder, True)
            rest = ("", rest[1], -1, rest[3], -1, *rest[5:])
            kwargs["verbose"], kwargs["show_progress"] = 0, False
        if self.vec_env == "envpool":
            # The Zoo's parser knows dummy and subproc only (the CLI takes envpool out of its arguments): args.yml
            # records the run's
            args = argparse.Namespace(**{**vars(args), "vec_env": self.vec_env})
        super().__init__(args, algo, env_id, log_folder, *rest, **kwargs)

    @property
    def saves_model(self) -> bool:
        """Whether this process saves and evaluates the trained model (not the other ranks of a data-parallel job)."""
        return not self.data_parallel_rank

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
        if self.data_parallel_rank is not None:
            processed["data_parallel"] = True
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
        # Save the model that training stopped on with `error` (the Zoo would lose it), and say so on stderr
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
        if self.data_parallel_rank is not None:
            # The model counts the steps of all ranks, and so do --eval-freq and --save-freq: the Zoo divides them by
            # one rank's n_envs to get the calls of its callbacks, each call one step of every rank's envs
            world_size = dist.get_world_size()
            self.eval_freq, self.save_freq = (
                max(frequency // world_size, 1) if frequency > 0 else frequency
                for frequency in (self.eval_freq, self.save_freq)
            )
        super().create_callbacks()
        if self.data_parallel_rank is not None:
            self.callbacks = [
                AllRanksProgressBar(world_size) if type(callback) is ProgressBarCallback else callback
                for callback in self.callbacks
            ]
        if self.algo not in MASKABLE_ALGORITHMS:
            return
        # The Zoo's EvalCallback, made again as a MaskableEvalCallback on the same env and settings: it evaluates under
        # the eval env's action masks and keeps a recurrent policy's memory
        for index, callback in enumerate(self.callbacks):
            if type(callback) is EvalCallback:
                self.callbacks[index] = MaskableEvalCallback(
                    callback.eval_env,
                    callback_on_new_best=callback.callback_on_new_best,
                    best_model_save_path=callback.best_model_save_path,
                    n_eval_episodes=callback.n_eval_episodes,
                    log_path=self.save_path,
                    eval_freq=callback.eval_freq,
                    deterministic=callback.deterministic,
                )

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
        Evaluate ``model`` over ``n_episodes`` on a test environment built from the run's saved configuration (as
        ``enjoy`` does).

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
    A :class:`TRPOExperimentManager` class for one run, with these class attributes (the Zoo's ``train()`` creates the
    manager itself).

    :return: the class
    """
    settings: dict[str, Any] = {
        "n_final_eval_episodes": n_final_eval_episodes,
        "vec_env": vec_env,
        "data_parallel_rank": data_parallel_rank,
        "n_trial_seeds": n_trial_seeds,
    }
    if vec_env == "envpool":
        from sb3_trpo.zoo.envpool import envpool_vec_env_cls

        # The Zoo's own hook: the class make_vec_env builds the training and evaluation envs with
        settings["default_vec_env_cls"] = staticmethod(envpool_vec_env_cls)
    return cast(type[TRPOExperimentManager], type("RunExperimentManager", (TRPOExperimentManager,), settings))
