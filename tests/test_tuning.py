"""Our Optuna search spaces (sb3_trpo.zoo.tuning) in the RL Zoo's registry; shared tuning: two workers, one study."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

pytest.importorskip("rl_zoo3", reason='the RL Zoo is an optional dependency: pip install "sb3_trpo[extra]"')

from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

from sb3_trpo import NPG, TRPO
from sb3_trpo.zoo import register
from sb3_trpo.zoo.manager import _UnprunedTrial
from sb3_trpo.zoo.tuning import sample_npg_params, sample_trpo_params

register()  # our samplers in the Zoo's table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("algo,sampler", [(TRPO, sample_trpo_params), (NPG, sample_npg_params)])
def test_sampled_hyperparameters_build_the_algorithm(algo, sampler, seed):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    kwargs = sampler(trial, n_actions=1, n_envs=2, additional_args={})
    assert kwargs["batch_size"] <= kwargs["n_steps"] * 2
    assert kwargs["cg_damping"] >= kwargs["target_kl"]  # damping sampled relative to the radius
    assert ("line_search_shrinking_factor" in kwargs) == (algo is TRPO)
    model = algo("MlpPolicy", "Pendulum-v1", **kwargs)
    assert model.target_kl == kwargs["target_kl"] and model.n_steps == kwargs["n_steps"]
    assert HYPERPARAMS_SAMPLER[algo.__name__.lower()] is sampler


def test_a_later_run_of_a_multi_seed_trial_reads_its_hyperparameters_and_never_prunes():
    # --trial-seeds: the second and later runs of a trial see the trial's sampled values, report nothing, never prune
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.0), sampler=optuna.samplers.RandomSampler(0)
    )
    trial = study.ask()
    sampled = sample_trpo_params(trial, n_actions=1, n_envs=2, additional_args={})
    later = _UnprunedTrial(trial)
    assert sample_trpo_params(later, n_actions=1, n_envs=2, additional_args={}) == sampled  # type: ignore[arg-type]
    assert later.number == trial.number
    later.report(-1.0, 0)
    assert not later.should_prune() and study.trials[0].intermediate_values == {}
    trial.report(-1.0, 0)  # the first run's value below the threshold prunes
    assert trial.should_prune()


def _tune(storage: str, study: str, cwd: Path, seed: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "-m", "sb3_trpo", "train", "--env", "Pendulum-v1", "-n", "512", "-optimize", "--n-trials", "2",
        "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1",
        "--storage", storage, "--study-name", study, "--seed", str(seed), "--num-threads", "1",
        "-params", "n_steps:256", "--final-eval-episodes", "0",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _two_workers_share_one_study(storage: str, tmp_path: Path) -> None:
    # The study (and the storage's tables) made once, before the workers start: two workers creating the tables of an
    # empty database at the same moment collide (Optuna's RDB storage); then each worker loads it
    optuna.create_study(storage=storage, study_name="shared", direction="maximize")
    # Seeds 48 and 107 of the random sampler draw cheap trials (256 steps per env and update: one rollout of the budget)
    workers = [_tune(storage, "shared", tmp_path / f"worker{index}", seed) for index, seed in enumerate((48, 107))]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # two trials from each worker, in one study
    # The best trial's hyperparameters train
    kwargs = sample_trpo_params(optuna.trial.FixedTrial(study.best_trial.params), n_actions=1, n_envs=1, additional_args={})
    TRPO("MlpPolicy", "Pendulum-v1", **{**kwargs, "n_steps": 64, "batch_size": 64}).learn(128)


def test_two_tuning_workers_share_one_sqlite_study(tmp_path):
    for index in range(2):
        (tmp_path / f"worker{index}").mkdir()
    _two_workers_share_one_study(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)


def _postgres_binaries() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


@pytest.fixture
def postgres_url():
    """A real PostgreSQL server in a temporary folder, on a free loopback port, run by an unprivileged user."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); the shared-study test needs a server")
    pytest.importorskip("psycopg", reason='psycopg is needed for PostgreSQL storage: pip install "sb3_trpo[tuning]"')
    folder = Path(tempfile.mkdtemp(prefix="sb3_trpo_pg_"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, log = folder / "data", folder / "server.log"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as nobody
        os.chmod(folder, 0o777)
        run_as = ["runuser", "-u", "nobody", "--"]
    initdb = subprocess.run(
        [*run_as, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "optuna"], capture_output=True, text=True
    )
    assert initdb.returncode == 0, initdb.stdout + initdb.stderr
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    start = subprocess.run(
        [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
        capture_output=True,
        text=True,
    )
    assert start.returncode == 0, start.stdout + start.stderr + (log.read_text() if log.exists() else "")
    try:
        createdb = [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "optuna", "studies"]
        subprocess.run(createdb, check=True, capture_output=True)
        yield f"postgresql+psycopg://optuna@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], check=False, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_two_tuning_workers_share_one_postgresql_study(postgres_url, tmp_path):
    for index in range(2):
        (tmp_path / f"worker{index}").mkdir()
    _two_workers_share_one_study(postgres_url, tmp_path)
