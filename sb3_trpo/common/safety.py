"""Guards that keep non-finite data and broken save files from reaching a TRPO model."""

import io
import pathlib
import zipfile

import numpy as np
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import open_path

#: Members of the zip archive that ``TRPO.save`` always writes
REQUIRED_ARCHIVE_MEMBERS = ("data", "policy.pth", "policy.optimizer.pth")


def first_non_finite(named_arrays: dict[str, np.ndarray], n_rows: int) -> tuple[str, int] | None:
    """
    ``(name, row)`` of the first NaN or inf among float arrays of ``n_rows`` rows each (others are skipped), or None.
    """
    for name, array in named_arrays.items():
        if np.issubdtype(array.dtype, np.floating):
            finite = np.isfinite(array.reshape(n_rows, -1)).all(axis=1)
            if not finite.all():
                return name, int(np.flatnonzero(~finite)[0])
    return None


def _named_env_data(observations: np.ndarray | dict[str, np.ndarray], rewards: np.ndarray) -> dict[str, np.ndarray]:
    named = {"reward": rewards}
    if isinstance(observations, dict):
        named.update({f"observation[{key!r}]": obs for key, obs in observations.items()})
    else:
        named["observation"] = observations
    return named


def _finite(array: np.ndarray) -> bool:
    return not np.issubdtype(array.dtype, np.floating) or bool(np.isfinite(array).all())


_NON_FINITE_HINT = (
    "the policy was not updated with it. "
    "Wrap the env in stable_baselines3.common.vec_env.VecCheckNan to find where it comes from."
)


class RejectNonFiniteEnvData(BaseCallback):
    """
    Stop ``learn()`` with an error naming the env and step as soon as an env returns a NaN or inf observation or
    reward, before the policy or the advantages see it. TRPO adds it in front of the user's callbacks.
    """

    def _on_step(self) -> bool:
        new_obs, rewards = self.locals["new_obs"], self.locals["rewards"]
        observations = new_obs.values() if isinstance(new_obs, dict) else (new_obs,)
        if np.isfinite(rewards).all() and all(_finite(obs) for obs in observations):
            return True  # the usual case, one ufunc per array
        found = first_non_finite(_named_env_data(new_obs, np.asarray(rewards)), len(rewards))
        if found is not None:
            name, env = found
            raise ValueError(
                f"Non-finite {name} (NaN or inf) from env index {env} at step {self.locals['n_steps']} of the current "
                f"rollout (timestep {self.num_timesteps}): {_NON_FINITE_HINT}"
            )
        return True


def check_finite_rollout(rollout_buffer: RolloutBuffer) -> None:
    """
    Refuse a rollout buffer with NaN or inf observations or rewards before any parameter is touched (one NaN reward
    would make every advantage, then the weights, NaN); this also covers buffers not filled by ``learn()``.

    :param rollout_buffer: a filled rollout buffer, shape (n_steps, n_envs, ...) or partly flattened by ``get()``
    :raises ValueError: naming the quantity, the env index and the rollout step of the first non-finite value
    """
    n_steps, n_envs = rollout_buffer.buffer_size, rollout_buffer.n_envs
    named = _named_env_data(rollout_buffer.observations, rollout_buffer.rewards)
    for name, array in named.items():
        found = first_non_finite({name: array}, n_steps * n_envs)
        if found is None:
            continue
        # Collected layout: (n_steps, n_envs, ...); `get()` flattens some arrays to (n_envs * n_steps, ...)
        if array.shape[:2] == (n_steps, n_envs):
            step, env = divmod(found[1], n_envs)
        else:
            env, step = divmod(found[1], n_steps)
        raise ValueError(
            f"Non-finite {name} (NaN or inf) from env index {env} at step {step} of the last rollout "
            f"({n_steps} steps x {n_envs} envs): {_NON_FINITE_HINT}"
        )


def check_model_archive(path: str | pathlib.Path | io.BufferedIOBase) -> None:
    """
    Check that a saved model is a complete, uncorrupted zip archive before loading from it.

    :param path: path (``.zip`` appended when missing, as SB3 does) or a file-like object (its position is restored)
    :raises ValueError: when the file is not a zip archive, fails a CRC check or lacks a member TRPO writes
    """
    corrupted = f"Cannot load a TRPO model from {path!r}: the file is truncated or corrupted"
    file = open_path(path, "r", verbose=0, suffix="zip")
    start = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            damaged_member = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"{corrupted} ({error})") from error
    finally:
        if isinstance(path, io.BufferedIOBase):
            file.seek(start)
        else:
            file.close()
    if damaged_member is not None:
        raise ValueError(f"{corrupted} (member {damaged_member!r} fails its CRC check)")
    missing = [name for name in REQUIRED_ARCHIVE_MEMBERS if name not in names]
    if missing:
        raise ValueError(f"{corrupted} (missing {missing})")
