"""
Data-parallel training with the Python API: one process per rank, launched by torchrun.

    torchrun --standalone --nproc_per_node 2 docs/examples/train_data_parallel.py --env Pendulum-v1 -n 100000
    # several machines: on each, --nnodes N --node-rank I --rdzv-endpoint HOST:PORT instead of --standalone
    # restarted after a failure, from the last checkpoint (saved every 5 updates):
    torchrun --standalone --nproc_per_node 2 --max-restarts 3 docs/examples/train_data_parallel.py --checkpoint-dir ckpt

Each rank collects its own rollouts (seed + rank) and the update averages every mean over the ranks
(``data_parallel=True``, :mod:`sb3_trpo.common.distributed`), so all ranks hold the same parameters; rank 0 prints,
evaluates and saves. gloo on CPU; NCCL when each rank has a GPU (``--device cuda``).
"""

import argparse
import os

import torch as th
import torch.distributed as dist
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo.common.distributed import DataParallelCheckpoint, close_process_group, load_checkpoint
from sb3_trpo.zoo import ALGORITHMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="trpo", choices=["trpo", "npg"])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("-n", "--n-timesteps", type=int, default=100_000, help="steps of all ranks together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", default="", help="where rank 0 saves the model (.zip); empty: not saved")
    parser.add_argument("--checkpoint-dir", default="", help="checkpoint folder: saved to, and resumed from if present")
    parser.add_argument("--checkpoint-every", type=int, default=5, help="updates between checkpoints")
    args = parser.parse_args()

    th.set_num_threads(1)
    use_cuda = args.device.startswith("cuda")
    if use_cuda:
        th.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        algorithm = ALGORITHMS[args.algo].load()
        env = make_vec_env(args.env, n_envs=1)
        callbacks = []
        model = None
        if args.checkpoint_dir:
            callbacks.append(DataParallelCheckpoint(args.checkpoint_dir, args.checkpoint_every))
            model = load_checkpoint(algorithm, args.checkpoint_dir, env, device=args.device)
        if model is None:
            model = algorithm("MlpPolicy", env, seed=args.seed, device=args.device, verbose=1, data_parallel=True)
            model.learn(args.n_timesteps, callback=callbacks)
        else:
            # Resumed: the steps still to take (num_timesteps counts all ranks' steps, as the budget does)
            model.learn(max(args.n_timesteps - model.num_timesteps, 0), callback=callbacks, reset_num_timesteps=False)
        if dist.get_rank() == 0:
            mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=10)
            print(f"{dist.get_world_size()} ranks, {args.n_timesteps} steps in all: mean_reward={mean:.2f} +/- {std:.2f}")
            if args.save:
                model.save(args.save)
    finally:
        close_process_group()


if __name__ == "__main__":
    main()
