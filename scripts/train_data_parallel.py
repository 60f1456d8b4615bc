"""
Data-parallel training with the Python API: one process per rank, launched by torchrun.

    torchrun --standalone --nproc_per_node 2 scripts/train_data_parallel.py --env Pendulum-v1 -n 100000
    # several machines: on each, --nnodes N --node-rank I --rdzv-endpoint HOST:PORT instead of --standalone

Each rank collects its own rollouts (seed + rank) and the update averages every mean over the ranks
(``data_parallel=True``, :mod:`sb3_trpo.common.distributed`), so all ranks hold the same parameters; rank 0 prints,
evaluates and saves. gloo on CPU; NCCL when each rank has a GPU (``--device cuda``).
"""

import argparse
import os

import torch as th
import torch.distributed as dist
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo.zoo import ALGORITHMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="trpo", choices=["trpo", "npg"])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("-n", "--n-timesteps", type=int, default=100_000, help="steps of all ranks together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", default="", help="where rank 0 saves the model (.zip); empty: not saved")
    args = parser.parse_args()

    th.set_num_threads(1)
    use_cuda = args.device.startswith("cuda")
    if use_cuda:
        th.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        algorithm = ALGORITHMS[args.algo]
        model = algorithm("MlpPolicy", args.env, seed=args.seed, device=args.device, verbose=1, data_parallel=True)
        model.learn(args.n_timesteps)
        if dist.get_rank() == 0:
            mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=10)
            print(f"{dist.get_world_size()} ranks, {args.n_timesteps} steps in all: mean_reward={mean:.2f} +/- {std:.2f}")
            if args.save:
                model.save(args.save)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
