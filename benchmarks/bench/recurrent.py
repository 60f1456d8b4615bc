"""
Time RecurrentTRPO's update (``train()`` alone) with each padded sequence run in one LSTM call against sb3-contrib's
step-by-step loop, on the same data and weights (``python -m benchmarks bench recurrent``).

sb3-contrib's recurrent policies (``_process_sequence``) loop over the steps of a batch of padded sequences, one LSTM
call per step, whenever any episode start is set in it, which is almost always (the buffers cut a sequence at every
episode start). RecurrentTRPO moves those resets into the sequences' initial states
(``reset_states_at_sequence_starts``), so the LSTM runs over all steps in one call. "loop" below is the update with
that function replaced by the identity (sb3-contrib's path: the code before the change); "one call" is the current
update. For each config one rollout is collected, then the timed calls alternate (loop, one call, loop, ...), each
from the same weights, optimizer state, buffer and RNG state, on one core and one torch thread (run under
``taskset -c 1``). Each line also says how far apart the two paths' parameters are after one update (rounding only).

Usage::

    taskset -c 1 python -m benchmarks bench recurrent --updates 5 --json benchmarks/bench_recurrent.json
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import rl_zoo3.import_envs  # noqa: F401 (registers CartPoleNoVel-v1 and PendulumNoVel-v1)
import torch as th
import yaml
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecNormalize

import sb3_trpo.common.recurrent.algorithm as recurrent_module
from benchmarks import REPO_ROOT
from benchmarks.bench import patched, restore, snapshot
from benchmarks.records import git_state, hardware, versions
from sb3_trpo import RecurrentTRPO
from sb3_trpo.common.natural_gradient import get_flat_params

#: config name -> (hyperparameter file, environment id): zoo_configs/trpo_lstm.yml's entries (PendulumNoVel-v1's tuned
#: one, 4 x 256 steps per update) and PendulumNoVel-v1's untuned entry (4 x 1024)
CONFIGS = {
    "cartpole_novel": ("zoo_configs/trpo_lstm.yml", "CartPoleNoVel-v1"),
    "pendulum_novel": ("benchmarks/configs/recurrent/trpo_lstm_pendulum_untuned.yml", "PendulumNoVel-v1"),
    "pendulum_novel_256": ("zoo_configs/trpo_lstm.yml", "PendulumNoVel-v1"),
}


def build(config: str, seed: int) -> RecurrentTRPO:
    """RecurrentTRPO with the config's entry (policy_kwargs evaluated as the RL Zoo does), one rollout collected."""
    path, env_id = CONFIGS[config]
    entry = dict(yaml.safe_load((REPO_ROOT / path).read_text())[env_id])
    env = make_vec_env(env_id, n_envs=entry.pop("n_envs", 1), seed=seed)
    if entry.pop("normalize", False):
        env = VecNormalize(env)
    for key in ("n_timesteps", "policy"):
        entry.pop(key, None)
    policy_kwargs = eval(entry.pop("policy_kwargs", "dict()"), {"nn": th.nn})  # the Zoo's own convention
    model = RecurrentTRPO("MlpLstmPolicy", env, policy_kwargs=policy_kwargs, seed=seed, **entry)
    model.set_logger(configure(None, [""]))
    _, callback = model._setup_learn(model.n_steps * model.n_envs)
    assert model.env is not None and model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model


def sb3_contrib_loop() -> Any:
    """The update as before the change: episode starts left in place, so sb3-contrib loops over the steps."""
    return patched(
        recurrent_module, "reset_states_at_sequence_starts", lambda _: lambda states, starts: ((states[0], states[1]), starts)
    )


def bench_config(config: str, updates: int, seed: int) -> dict[str, Any]:
    model = build(config, seed)
    pristine = snapshot(model)

    def timed_update() -> tuple[float, th.Tensor]:
        restore(model, pristine, seed)
        start = time.perf_counter()
        model.train()
        return time.perf_counter() - start, get_flat_params(list(model.policy.parameters())).detach().clone()

    seconds: dict[str, list[float]] = {"loop": [], "one_call": []}
    params: dict[str, th.Tensor] = {}
    for _ in range(updates):
        with sb3_contrib_loop():
            elapsed, params["loop"] = timed_update()
        seconds["loop"].append(elapsed)
        elapsed, params["one_call"] = timed_update()
        seconds["one_call"].append(elapsed)
    loop, one_call = statistics.median(seconds["loop"]), statistics.median(seconds["one_call"])
    return {
        "config": config,
        "file": CONFIGS[config][0],
        "env": CONFIGS[config][1],
        "steps_per_update": model.n_steps * model.n_envs,
        "loop_s": loop,
        "one_call_s": one_call,
        "speedup": loop / one_call,
        "max_param_diff": float((params["loop"] - params["one_call"]).abs().max()),
        "seconds": seconds,
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    """:return: the results as docs/results.md shows them (between its ``bench-recurrent`` markers)"""
    lines = [
        "| config | env | steps/update | loop train() s | one call train() s | speed-up | max param diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result['config']} | {result['env']} | {result['steps_per_update']} | {result['loop_s']:.2f} |"
            f" {result['one_call_s']:.2f} | {result['speedup']:.1f}x | {result['max_param_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench recurrent``."""
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--updates", type=int, default=5, help="timed train() calls per path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="save the results here")


def main(args: argparse.Namespace) -> int:
    th.set_num_threads(1)
    results = []
    for config in args.configs:
        results.append(bench_config(config, args.updates, args.seed))
        print(f"[done {config}]", flush=True)
    print(markdown_table(results), end="")
    if args.json:
        output = {
            "command": args.command_line,
            **git_state(),
            "versions": versions(),
            "hardware": hardware(),
            "threads": 1,
            "updates": args.updates,
            "results": results,
        }
        Path(args.json).write_text(json.dumps(output, indent=2) + "\n")
    return 0
