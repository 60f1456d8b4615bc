"""Tests of the harness (``python -m benchmarks``): a tiny grid end to end, resumability, records, reports, plots."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import REPO_ROOT, ablation, entries, fingerprint, grid, plot, records, report, stats, tuning
from benchmarks.algorithms import ALGORITHMS
from benchmarks.cli import main as cli
from benchmarks.records import attached, load_runs, run_std_at, score_at
from sb3_trpo import zoo

ALGOS = ("sb3_trpo", "sb3_contrib", "ppo")
# Both TRPOs with the RL Zoo's own trpo.yml, as in every published comparison (sb3-contrib's TRPO takes no
# target_kl schedule, which our CartPole-v1 entry has); its CartPole-v1 budget is 1e5 steps: 2% of it is 2,000 steps
TINY_GRID = [
    "--envs", "CartPole-v1", "--algos", *ALGOS, "--seeds", "0", "--budget-scale", "0.02",
    "--n-evals", "2", "--eval-episodes", "2", "--final-eval-episodes", "2", "--trpo-config", "rl_zoo",
]  # fmt: skip


def run_benchmark(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", *TINY_GRID, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("results")
    completed = run_benchmark(out)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out, completed


def test_benchmark_records(tiny_results):
    out, completed = tiny_results
    assert "3 runs to do, 0 finished runs skipped" in completed.stdout
    compact = [json.loads(line) for line in (out / "CartPole-v1.jsonl").read_text().splitlines()]
    # The records are written compact: the summary of the per-update log in its place, the log in the side file
    assert all("updates" not in record and record["updates_summary"]["updates"] > 0 for record in compact)
    records = list(attached(out / "CartPole-v1.jsonl"))

    def without_log(record: dict) -> dict:
        return {key: value for key, value in record.items() if key not in ("updates", "updates_summary")}

    assert [without_log(record) for record in records] == [without_log(record) for record in compact]
    assert sorted(record["algo"] for record in records) == sorted(ALGOS)
    for record in records:
        assert record["env"] == "CartPole-v1" and record["seed"] == 0 and record["budget"] == 2000
        assert record["timesteps"] >= 2000
        # Both TRPOs read the same entry; PPO reads the Zoo's ppo.yml
        config = Path(record["config_file"]).name
        assert config == ("ppo.yml" if record["algo"] == "ppo" else "trpo.yml")
        assert record["config_key"] == "CartPole-v1" and record["config_note"] == ""
        assert record["hyperparams"]["policy"] == "MlpPolicy" and "n_envs" in record["hyperparams"]
        assert record["zoo_n_timesteps"] == 100_000
        # Learning curve: one evaluation before training, n_evals along it, the last at the end of training
        curve = record["learning_curve"]
        assert curve[0]["timesteps"] == 0 and curve[-1]["timesteps"] == record["timesteps"]
        assert len(curve) >= 3 and all(set(point) >= {"timesteps", "mean", "std"} for point in curve)
        assert record["final_eval"]["episodes"] == 2 and len(record["final_eval"]["returns"]) == 2
        assert record["wall_clock_s"] > 0 and record["steps_per_second"] > 0
        assert record["updates"] and all("ep_rew_mean" in update for update in record["updates"])
        assert set(record["versions"]) >= {"python", "torch", "stable_baselines3", "sb3_contrib", "sb3_trpo", "gymnasium"}
        assert record["command"].startswith("python -m benchmarks run") and record["torch_threads"] == 1
        # The protocol's fields: the seed's role, the commit the code came from, the machine, the algorithm's fingerprint
        assert record["seed_role"] == "tuning"
        assert (record["fingerprint"] is None) == (record["algo"] != "sb3_trpo")
        assert len(record["git_commit"]) == 40 and isinstance(record["git_dirty"], bool)
        assert record["hardware"]["cpu_capability"] and record["hardware"]["cpu"]
    diagnostics = {record["algo"]: record["updates"][-1] for record in records}
    for trpo in ("sb3_trpo", "sb3_contrib"):
        assert {"kl_divergence_loss", "is_line_search_success"} <= set(diagnostics[trpo])
    assert "approx_kl" in diagnostics["ppo"]
    # Our KL after an accepted step is inside the trust region (CartPole-v1's entry keeps the default 0.01)
    for update in next(record for record in records if record["algo"] == "sb3_trpo")["updates"]:
        if update["is_line_search_success"]:
            assert update["kl_divergence_loss"] <= 0.01 + 1e-6


def test_benchmark_resumes(tiny_results):
    out, _ = tiny_results
    lines_before = (out / "CartPole-v1.jsonl").read_text()
    completed = run_benchmark(out)
    assert completed.returncode == 0, completed.stderr
    assert "0 runs to do, 3 finished runs skipped" in completed.stdout
    assert (out / "CartPole-v1.jsonl").read_text() == lines_before


def test_plot_results(tiny_results, tmp_path):
    out, _ = tiny_results
    table = tmp_path / "results.md"
    assert cli(["plot", "--results", str(out), "--plots", str(tmp_path / "plots"), "--table", str(table)]) == 0
    assert (tmp_path / "plots" / "CartPole-v1.png").stat().st_size > 0
    text = table.read_text()
    for algo in ALGOS:
        assert f"| CartPole-v1 | 2,000 | {ALGORITHMS[algo].label} | 0 |" in text


def test_drop_share_and_cv():
    # Range 10; one fall larger than 1 (10 -> 5) among three updates
    assert records.drop_share([0.0, 10.0, 5.0, 10.0]) == pytest.approx(1 / 3)
    # Updates before the first finished episode are left out; a flat curve never drops
    assert records.drop_share([None, 3.0, 3.0]) == 0.0
    assert records.drop_share([0.0, 10.0, 9.5]) == 0.0
    assert stats.coefficient_of_variation([1.0, 3.0]) == pytest.approx(0.5)


def test_mujoco_v5_uses_zoo_v4_entries():
    key, entry = entries.select_entry(entries.rl_zoo_config("ppo"), "Hopper-v5")
    assert key == "Hopper-v4" and entry["n_timesteps"] == 1e6
    # Our own file has v5 entries
    key, _ = entries.select_entry(str(REPO_ROOT / "zoo_configs" / "trpo.yml"), "Hopper-v5")
    assert key == "Hopper-v5"


def test_benchmark_rejects_unknown_algorithm():
    with pytest.raises(SystemExit):
        grid.parse_args(["--algos", "a2c"])


def test_resume_keys_on_hyperparameters(tiny_results, tmp_path):
    # A finished run counts for any file with the same entry (our former CartPole-v1 entry is the RL Zoo's values),
    # and a changed entry runs again under the same file name
    out, _ = tiny_results
    former = str(REPO_ROOT / "benchmarks" / "configs" / "former_entries.yml")
    same = grid.parse_args([*TINY_GRID, "--out", str(out), "--trpo-config", former])
    assert grid.plan_runs(same) == ([], 3)
    _, zoo_entry = entries.select_entry(entries.rl_zoo_config("trpo"), "CartPole-v1")
    changed = tmp_path / "trpo.yml"
    changed.write_text(yaml.safe_dump({"CartPole-v1": {**zoo_entry, "target_kl": 0.02}}))
    pending, skipped = grid.plan_runs(grid.parse_args([*TINY_GRID, "--out", str(out), "--trpo-config", str(changed)]))
    assert sorted(spec["algo"] for spec in pending) == ["sb3_contrib", "sb3_trpo"] and skipped == 1
    assert all(spec["config"] == str(changed) for spec in pending)


def test_sb3_contrib_refuses_an_entry_it_cannot_take(tmp_path):
    # Both TRPOs read --trpo-config: our entries' own options and target_kl schedules are refused for sb3-contrib's
    # TRPO before anything runs, with the names and the way out, instead of a TypeError inside its train()
    args = grid.parse_args([*TINY_GRID, "--out", str(tmp_path), "--trpo-config", str(REPO_ROOT / "zoo_configs" / "trpo.yml")])
    with pytest.raises(ValueError, match=r"sb3_contrib: the CartPole-v1 entry .* target_kl='lin_0\.02' .*rl_zoo"):
        grid.plan_runs(args)
    options = tmp_path / "trpo.yml"
    _, zoo_entry = entries.select_entry(entries.rl_zoo_config("trpo"), "CartPole-v1")
    options.write_text(yaml.safe_dump({"CartPole-v1": {**zoo_entry, "ent_coef": 0.01, "adaptive_kl": True}}))
    args = grid.parse_args([*TINY_GRID, "--out", str(tmp_path), "--trpo-config", str(options)])
    with pytest.raises(ValueError, match="sets adaptive_kl, ent_coef, which"):
        grid.plan_runs(args)
    # Ours and PPO take it; the command line says so and exits 2 without running anything
    ours = grid.parse_args([*TINY_GRID, "--out", str(tmp_path), "--algos", "sb3_trpo", "--trpo-config", str(options)])
    assert len(grid.plan_runs(ours)[0]) == 1
    assert cli(["run", *TINY_GRID, "--out", str(tmp_path), "--trpo-config", str(options)]) == 2
    assert not list(tmp_path.glob("*.jsonl"))


def test_variant_labels_name_the_changes_from_the_rl_zoo():
    _, zoo_entry = entries.select_entry(entries.rl_zoo_config("trpo"), "Walker2d-v5")
    record = {"algo": "sb3_trpo", "env": "Walker2d-v5", "hyperparams": records.json_ready(zoo_entry)}
    assert entries.variant_label(record) == "sb3_trpo TRPO (ours)"
    tuned = {**record, "hyperparams": {**record["hyperparams"], "target_kl": 0.06, "cg_damping": 0.2}}
    assert entries.variant_label(tuned) == "sb3_trpo TRPO (ours), cg_damping=0.2, target_kl=0.06"
    runs = [{**tuned, "seed": 1}, {**record, "seed": 1}, {**record, "algo": "sb3_contrib", "seed": 0}, {**record, "seed": 0}]
    grouped = entries.by_variant(runs)
    assert list(grouped) == [
        "sb3_trpo TRPO (ours)",
        "sb3_trpo TRPO (ours), cg_damping=0.2, target_kl=0.06",
        "sb3-contrib TRPO",
    ]
    assert [run["seed"] for run in grouped["sb3_trpo TRPO (ours)"]] == [0, 1]
    # The entry of zoo_configs/trpo.yml marked `# Tuned` is named as such and plotted with the Zoo's settings; the
    # other candidates only in candidates/
    ours = yaml.safe_load((REPO_ROOT / "zoo_configs" / "trpo.yml").read_text())["Walker2d-v5"]
    entry = {**record, "hyperparams": records.json_ready(ours), "budget": int(ours["n_timesteps"])}
    assert entries.variant_label(entry).startswith("sb3_trpo TRPO (ours, tuned), ")
    assert entries.is_tuned(entry) and entries.is_headline(entry) and entries.is_headline(record)
    assert not entries.is_tuned({**entry, "budget": 1000}) and not entries.is_headline({**tuned, "budget": 1})
    assert not entries.is_tuned({**entry, "algo": "sb3_contrib"})
    # A candidate that adds a hyperparameter to the entry is a candidate, not the entry
    wider = {**entry, "hyperparams": {**entry["hyperparams"], "policy_kwargs": "dict(net_arch=[256, 256])"}}
    assert not entries.is_tuned(wider) and not entries.is_headline(wider)
    assert "(ours, tuned)" not in entries.variant_label(wider)
    # Humanoid-v5 is judged, and tuned, at 1M of its entry's 2M steps: the entry's runs at either budget are the entry,
    # a run cut shorter is not
    humanoid = yaml.safe_load((REPO_ROOT / "zoo_configs" / "trpo.yml").read_text())["Humanoid-v5"]
    assert int(humanoid["n_timesteps"]) == 2_000_000 and entries.JUDGED_AT == {"Humanoid-v5": 1_000_000}
    humanoid_run = {**record, "env": "Humanoid-v5", "hyperparams": records.json_ready(humanoid)}
    assert all(entries.is_tuned({**humanoid_run, "budget": budget}) for budget in (1_000_000, 2_000_000))
    assert not entries.is_tuned({**humanoid_run, "budget": 500_000})


def test_seed_roles_never_mix():
    assert [records.seed_role(seed) for seed in (0, 4, 99, 100, 109, 199)] == ["tuning"] * 3 + ["evaluation"] * 3
    assert [records.seed_role(seed) for seed in (1000, 1009, 1999)] == ["confirmation"] * 3
    for seed in (200, 999, 2000):
        with pytest.raises(ValueError, match="neither a tuning seed"):
            records.seed_role(seed)


def test_sb3_trpo_contrib_kl_is_our_trpo_with_sb3_contribs_trust_region_and_its_records_say_so():
    assert "sb3_trpo_contrib_kl" not in grid.Args().algos
    spec = {
        "algo": "sb3_trpo_contrib_kl",
        "env": "Pendulum-v1",
        "seed": 1000,
        "budget": 2048,
        "config": entries.rl_zoo_config("trpo"),
        "n_evals": 1,
        "eval_episodes": 1,
        "final_eval_episodes": 1,
    }
    record = grid.run_one(spec)
    assert record["kl_constraint"] == "sb3_contrib" and record["model_kwargs"]["kl_constraint"] == "sb3_contrib"
    assert "kl_constraint" not in record["hyperparams"]  # the Zoo's entry, as the file holds it
    assert record["seed_role"] == "confirmation" and record["timesteps"] == 2048
    # its own fingerprint: sb3-contrib's trust region on a 2-dimensional Box task
    assert record["fingerprint"] == fingerprint.fingerprint("sb3_trpo_contrib_kl")
    assert not fingerprint.same_algorithm(record["fingerprint"], fingerprint.fingerprint("sb3_trpo"))


def test_ablation_plans_every_variant_on_evaluation_seeds(tmp_path):
    assert set(ablation.SEEDS) <= set(range(100, 200))
    assert set(ablation.VARIANTS) == {
        "trpo",
        "trpo_ent_coef",
        "trpo_adaptive_kl",
        "trpo_cg_warm_start",
        "trpo_all_options",
        "npg",
    }
    # Each variant's file is trpo.yml's entry with its options, and nothing else changed (the former entry where a
    # robustness candidate has since replaced the one the ablation ran on)
    from benchmarks.entries import former_entries
    from sb3_trpo.zoo import load_config

    base = load_config(REPO_ROOT / "zoo_configs" / "trpo.yml")
    base.update({env_id: entries[0] for env_id, entries in former_entries().items()})
    assert base["Hopper-v5"]["target_kl"] == 0.03  # the entry of the committed ablation runs
    for variant, (_, options) in ablation.VARIANTS.items():
        entries = load_config(ablation.variant_config(variant))
        assert sorted(entries) == sorted(ablation.ENVS)
        for env_id, entry in entries.items():
            assert entry == {**base[env_id], **options}
    # NPG runs NPG: the spec's algorithm, and the constructor accepts the entries (no line-search key in them)
    specs = ablation.plan(["Pendulum-v1"], ["npg"], [100])
    assert all(spec["algo"] == "sb3_npg" for spec in specs)


def test_ablation_interval_estimates():
    returns = [10.0, 20.0, 30.0, 40.0, 1000.0]
    estimates = stats.iqm_and_mean(returns)
    # IQM of 5 runs: the mean of the middle 60% (scipy's trimmed mean, as rliable computes it)
    assert estimates["iqm"] == pytest.approx(30.0) and estimates["mean"] == pytest.approx(220.0)
    assert estimates["iqm_low"] <= estimates["iqm"] <= estimates["iqm_high"]
    assert estimates["mean_low"] <= estimates["mean"] <= estimates["mean_high"]


def test_fingerprint_tells_a_changed_algorithm_from_rounding(tiny_results):
    trpo, npg = fingerprint.fingerprint("sb3_trpo"), fingerprint.fingerprint("sb3_npg")
    assert fingerprint.same_algorithm(trpo, trpo)
    # A rounding-level difference keeps the records; another update (NPG has no line search) makes them stale
    assert fingerprint.same_algorithm([value * (1 + 1e-6) for value in trpo], trpo)
    assert not fingerprint.same_algorithm(npg, trpo)
    assert not fingerprint.same_algorithm(None, trpo)
    # The tiny grid's record was made by this code: not stale, so the grid counts it as finished
    out, _ = tiny_results
    record = next(json.loads(line) for line in (out / "CartPole-v1.jsonl").read_text().splitlines() if '"sb3_trpo"' in line)
    current = {"sb3_trpo": trpo, "sb3_contrib": None}
    assert not fingerprint.is_stale(record, current)
    assert fingerprint.is_stale({**record, "fingerprint": npg}, current)
    assert not fingerprint.is_stale({**record, "fingerprint": None}, current)  # made before fingerprints: not judged


def test_a_table_refuses_mixed_seed_roles_and_stale_records(tiny_results, tmp_path):
    out, _ = tiny_results
    lines = (out / "CartPole-v1.jsonl").read_text().splitlines()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    evaluation = [json.dumps({**json.loads(line), "seed": 100, "seed_role": "evaluation"}) for line in lines]
    (mixed / "CartPole-v1.jsonl").write_text("\n".join(lines + evaluation) + "\n")
    arguments = ["--results", str(mixed), "--plots", str(tmp_path / "plots"), "--table", str(tmp_path / "table.md")]
    assert cli(["plot", *arguments]) == 2
    assert not (tmp_path / "table.md").exists()
    assert cli(["plot", *arguments, "--allow-mixed"]) == 0
    # A record whose fingerprint is not the current code's is stale
    stale = tmp_path / "stale"
    stale.mkdir()
    records = [json.loads(line) for line in lines]
    for record in records:
        if record["fingerprint"] is not None:
            record["fingerprint"] = [value + 1.0 for value in record["fingerprint"]]
    (stale / "CartPole-v1.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    current = {"sb3_trpo": fingerprint.algorithm_fingerprint("sb3_trpo")}
    problems = fingerprint.record_problems(records, current)
    assert len(problems) == 1 and problems[0].startswith("stale: sb3_trpo CartPole-v1 seed 0")
    assert cli(["plot", "--results", str(stale), "--plots", str(tmp_path / "p2"), "--table", str(tmp_path / "t2.md")]) == 2


def _synthetic_records(returns: dict[str, dict[str, list[float]]]) -> list[dict]:
    # Records as the benchmark writes them, with the Zoo's own entries (the headline variants) and given returns
    records = []
    for algo, by_env in returns.items():
        config = entries.rl_zoo_config("ppo" if algo == "ppo" else "trpo")
        for env_id, values in by_env.items():
            _, entry = entries.select_entry(config, env_id)
            for offset, value in enumerate(values):
                records.append(
                    {"algo": algo, "env": env_id, "seed": 100 + offset, "seed_role": "evaluation", "budget": 1_000_000,
                     "hyperparams": entry, "final_eval": {"mean": value}, "fingerprint": None}
                )  # fmt: skip
    return records


def test_evaluation_report_statistics(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)  # a quicker bootstrap: the checks below do not depend on it
    ours = {"Hopper-v5": [3600.0, 3700.0, 3500.0, 3650.0, 3550.0], "Swimmer-v5": [360.0, 362.0, 358.0, 361.0, 359.0]}
    contrib = {"Hopper-v5": [2000.0, 2100.0, 1900.0, 2050.0, 1950.0], "Swimmer-v5": [300.0, 310.0, 290.0, 305.0, 295.0]}
    records = _synthetic_records({"sb3_trpo": ours, "sb3_contrib": contrib})
    results = tmp_path / "results"
    results.mkdir()
    for env_id in ours:
        (results / f"{env_id}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records if r["env"] == env_id))
    by_env = load_runs(str(results), "evaluation")
    text = report.report(by_env, tmp_path / "plots")
    assert "| Hopper-v5 | sb3_trpo TRPO (ours) | 5 | 3600.0 [" in text  # IQM of 5 runs: the middle three
    assert report.cpu_capabilities(by_env["Hopper-v5"][:5]) == "unknown 5"  # the synthetic records name no CPU
    machines = [{"hardware": {"cpu_capability": c}} for c in ("AVX2", "AVX512", "AVX2")] + [{"hardware": None}]
    assert report.cpu_capabilities(machines) == "AVX2 2, AVX512 1, unknown 1" and report.cpu_capabilities([]) == "-"
    # Every run of ours beats every run of contrib on both tasks: P(ours > contrib) = 1 (and its CI)
    assert "| sb3_trpo TRPO (ours, each task's entry) over sb3-contrib TRPO | 1.00 [1.00, 1.00] |" in text
    # The aggregate mean of the normalized scores is the plain mean over runs and tasks
    normalized = (sum(ours["Hopper-v5"]) / 3618.0 + sum(ours["Swimmer-v5"]) / 366.0) / 10
    assert "| sb3_trpo TRPO (ours, each task's entry) | 5 x 2 | " in text and f"{normalized:.2f} [" in text
    assert (tmp_path / "plots" / "performance_profile.png").stat().st_size > 0
    assert (tmp_path / "plots" / "probability_of_improvement.png").stat().st_size > 0
    # Tuning-seed records are never read
    tuning = [{**r, "seed": r["seed"] - 100, "seed_role": "tuning"} for r in records]
    (results / "Hopper-v5.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tuning))
    assert all(r["seed_role"] == "evaluation" for r in load_runs(str(results), "evaluation")["Swimmer-v5"])
    assert load_runs(str(results), "evaluation")["Hopper-v5"] == []


def test_an_algorithm_on_fewer_tasks_keeps_the_others_aggregate(tmp_path, monkeypatch):
    # PPO on Swimmer-v5 only (its grid still filling) must not shrink ours-against-sb3-contrib to Swimmer-v5: each
    # other algorithm is compared with ours on the tasks both have run
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 200)
    ours = {"Hopper-v5": [3600.0, 3700.0, 3500.0], "Swimmer-v5": [360.0, 362.0, 358.0]}
    contrib = {"Hopper-v5": [2000.0, 2100.0, 1900.0], "Swimmer-v5": [300.0, 310.0, 290.0]}
    ppo = {"Hopper-v5": [1000.0], "Swimmer-v5": [350.0, 365.0, 355.0]}  # one Hopper-v5 run: not yet a comparison
    records = _synthetic_records({"sb3_trpo": ours, "sb3_contrib": contrib, "ppo": ppo})
    by_env: dict = {}
    for record in records:
        by_env.setdefault(record["env"], []).append(record)
    ours_label, contrib_label, ppo_label = report.OURS_ENTRIES, "sb3-contrib TRPO", "SB3 PPO"
    blocks = report.aggregate_blocks(report.aggregate_scores(by_env))
    assert blocks == [(["Hopper-v5", "Swimmer-v5"], [ours_label, contrib_label]), (["Swimmer-v5"], [ours_label, ppo_label])]
    text = report.report(by_env, tmp_path / "plots")
    assert text.count("MuJoCo aggregate") == 2
    assert f"| {ours_label} | 3 x 2 | " in text and f"| {contrib_label} | 3 x 2 | " in text
    assert f"| {ours_label} | 3 x 1 | " in text and f"| {ppo_label} | 3 x 1 | " in text
    # On Swimmer-v5 ours beats PPO in 6 of the 9 pairs of runs (358 < 365, 360 < 365, 362 < 365), ties none
    assert f"| {ours_label} over {ppo_label} | 0.67 [" in text
    assert f"| {ours_label} over {contrib_label} | 1.00 [1.00, 1.00] |" in text
    # Without ours, one block of every algorithm on their common tasks
    others = {env_id: [r for r in runs if r["algo"] != "sb3_trpo"] for env_id, runs in by_env.items()}
    assert report.aggregate_blocks(report.aggregate_scores(others)) == [(["Swimmer-v5"], sorted([ppo_label, contrib_label]))]


def test_the_aggregate_takes_each_task_s_current_entry_of_ours_under_one_label(monkeypatch):
    # Ours is labeled by what each task's entry changes, so the MuJoCo aggregate gathers the current entries under one
    # label: the `# Tuned` entry where its runs exist (not a former entry, not a candidate), else the Zoo's settings
    zoo = {"Hopper-v5": [1.0, 2.0], "Swimmer-v5": [3.0, 4.0], "Walker2d-v5": [5.0, 6.0]}
    records = _synthetic_records({"sb3_trpo": zoo, "sb3_contrib": zoo})
    hopper, swimmer = records[0]["hyperparams"], records[2]["hyperparams"]
    former, tuned = {**hopper, "target_kl": 0.03}, {**hopper, "target_kl": "lin_0.06"}
    monkeypatch.setattr(entries, "former_entries", lambda: {"Hopper-v5": [former], "Swimmer-v5": [swimmer]})
    monkeypatch.setattr(entries, "tuned_entries", lambda: {"Hopper-v5": tuned})
    extra = [
        {**records[0], "hyperparams": former, "final_eval": {"mean": 10.0}},
        {**records[0], "hyperparams": tuned, "final_eval": {"mean": 20.0}},
        {**records[1], "hyperparams": tuned, "final_eval": {"mean": 30.0}},
        {**records[0], "hyperparams": {**tuned, "ent_coef": 0.01}, "final_eval": {"mean": 40.0}},  # a candidate
    ]
    by_env: dict[str, list[dict]] = {}
    for run in records + extra:
        by_env.setdefault(run["env"], []).append(run)
    scores = report.aggregate_scores(by_env)
    assert scores[report.OURS_ENTRIES] == {
        "Hopper-v5": {100: 20.0, 101: 30.0},  # the tuned entry; not the Zoo's values, the former entry, the candidate
        "Walker2d-v5": {100: 5.0, 101: 6.0},  # no tuned runs: the Zoo's settings
    }  # Swimmer-v5: its only runs of ours are a former entry (the Zoo's values)
    assert scores[ALGORITHMS["sb3_contrib"].label]["Swimmer-v5"] == {100: 3.0, 101: 4.0}
    # A former entry that is the Zoo's values is labeled as former too, not as the current "(ours)"
    assert entries.variant_label(records[2]) == "sb3_trpo TRPO (ours, former entry)"
    assert entries.variant_label(records[4]) == "sb3_trpo TRPO (ours)"


def test_evaluation_report_judges_the_targets(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    monkeypatch.setattr(entries, "former_entries", dict)  # the Zoo's values as the current entry
    ours = {
        "Hopper-v5": [3600.0, 3700.0, 3500.0, 3650.0, 3550.0],  # IQM 3600 < 3618; CV 0.020
        "Walker2d-v5": [5000.0, 3000.0, 7000.0, 5100.0, 4900.0],  # IQM 5000 >= 4933; CV 0.253 > 0.15
        "Humanoid-v5": [0.0, 0.0, 0.0],  # final returns; judged at 1M steps along the curve below
    }
    contrib = {"Hopper-v5": [3800.0, 3900.0, 3750.0, 3850.0, 3950.0], "Walker2d-v5": [1000.0, 1100.0, 900.0]}
    ppo = {"Hopper-v5": [3000.0, 3650.0, 3700.0]}
    records = _synthetic_records({"sb3_trpo": ours, "sb3_contrib": contrib, "ppo": ppo})
    for record in records:
        if record["env"] == "Humanoid-v5":
            record["budget"] = 2_000_000
            record["learning_curve"] = [
                {"timesteps": step, "mean": value}
                for step, value in ((500_000, 10.0), (1_000_000, 900.0 + record["seed"]), (2_000_000, 0.0))
            ]
    humanoid = [record for record in records if record["env"] == "Humanoid-v5"]
    del humanoid[-1]["learning_curve"][1]  # the last run has no evaluation at 1M steps: not judged
    by_env: dict = {}
    for record in records:
        by_env.setdefault(record["env"], []).append(record)
    # Until ours has run on all ten evaluation seeds, the estimates are shown and the verdicts pending
    pending = {line.split(" | ")[0][2:]: line for line in report.targets_table(by_env).splitlines()[2:]}
    assert "| 3600.0 [" in pending["Hopper-v5"] and "] | pending (5 of 10) | " in pending["Hopper-v5"]
    assert pending["Humanoid-v5"].endswith("| pending (2 of 10) | - | 0 | - | - | 0 |")
    summary = report.targets_summary(by_env)  # the README's paragraph: the same verdicts, current entries only
    assert (
        "IQM >= target: pending on Hopper-v5 (3600.0 against 3618, 5 of 10 seeds), Walker2d-v5 (5000.0 against 4933, "
        in summary
    )
    assert "and Humanoid-v5 at 1M steps (1000.5 against 810, 2 of 10 seeds)." in summary
    monkeypatch.setattr(report, "JUDGED_SEEDS", 2)  # judged as if the grid were complete
    rows = {line.split(" | ")[0][2:]: line for line in report.targets_table(by_env).splitlines()[2:]}
    summary = report.targets_summary(by_env)
    assert summary == (
        "Targets on the development seeds (ours with each task's current entry), no judgment: these seeds steered "
        "the search, so the targets are judged on the confirmation seeds only, in the MuJoCo headline, against targets "
        "since raised (HalfCheetah-v5 5800 and Ant-v5 3554). Against the targets set before: "
        "IQM >= target: met on Walker2d-v5 (5000.0 against 4933) and Humanoid-v5 at 1M steps (1000.5 against 810); "
        "missed on Hopper-v5 (3600.0 against 3618). "
        f"CV <= 0.15: met on Hopper-v5 ({np.std(ours['Hopper-v5']) / np.mean(ours['Hopper-v5']):.3f}) and Humanoid-v5 at "
        f"1M steps (0.000); missed on Walker2d-v5 ({np.std(ours['Walker2d-v5']) / np.mean(ours['Walker2d-v5']):.3f}). "
        "P(ours > sb3-contrib's TRPO) > 0.5: met on Walker2d-v5 (1.00 [1.00, 1.00]); "
        "missed on Hopper-v5 (0.00 [0.00, 0.00]).\n"
    )
    assert set(rows) == {"Hopper-v5", "Walker2d-v5", "Humanoid-v5"}
    label = "sb3_trpo TRPO (ours)"
    cv_hopper = np.std(ours["Hopper-v5"]) / np.mean(ours["Hopper-v5"])
    assert rows["Hopper-v5"].startswith(f"| Hopper-v5 | {label} | 5 | final | 3618 | 3600.0 [")
    assert f"| **missed** | {cv_hopper:.3f} | met | 0.00 [0.00, 0.00] | 5 | **missed** | 0.47 [" in rows["Hopper-v5"]
    # P(ours > PPO) over the 5 x 3 pairs, ties counting half: (5 + 1.5 + 0.5) / 15 = 0.47, PPO's 3 runs
    assert rows["Hopper-v5"].endswith("] | 3 |")
    cv_walker = np.std(ours["Walker2d-v5"]) / np.mean(ours["Walker2d-v5"])
    assert (
        "| 4933 | 5000.0 [" in rows["Walker2d-v5"] and f"| met | {cv_walker:.3f} | **missed** | 1.00 [" in rows["Walker2d-v5"]
    )
    # sb3-contrib has 3 runs there against our 5: the verdict is provisional
    assert rows["Walker2d-v5"].endswith("] | 3 | met (provisional) | - | 0 |")
    # Humanoid-v5 at 1M of its 2M steps: the two runs with an evaluation there (1000, 1001), no sb3-contrib runs
    assert rows["Humanoid-v5"].startswith(f"| Humanoid-v5 | {label} | 2 | 1,000,000 steps | 810 | 1000.5 [")
    assert rows["Humanoid-v5"].endswith("| met | - | 0 | - | - | 0 |")
    assert score_at(records[0], None) == 3600.0
    assert "Targets, judged on development seeds only" in report.tables(by_env)
    assert report.targets_table({"CartPole-v1": by_env["Hopper-v5"]}) == ""
    # A tuned entry of ours is judged too (its label names what it changes)
    tuned = [r for r in by_env["Hopper-v5"] if r["algo"] == "sb3_trpo"]
    monkeypatch.setattr(entries, "is_tuned", lambda record: record["algo"] == "sb3_trpo")
    monkeypatch.setattr(
        entries, "changes_from_rl_zoo", lambda record: {"n_steps": 2048} if record["algo"] == "sb3_trpo" else {}
    )
    row = report.targets_table({"Hopper-v5": tuned}).splitlines()[2]
    assert row.startswith("| Hopper-v5 | sb3_trpo TRPO (ours, tuned), n_steps=2048 | 5 | final | 3618 | 3600.0 [")
    # A former entry has no place in the summary: the same runs as a former entry leave it empty
    assert report.targets_summary({"Hopper-v5": tuned}).startswith("Targets on the development seeds")
    monkeypatch.setattr(entries, "is_former_entry", lambda record: record["algo"] == "sb3_trpo")
    assert report.targets_summary({"Hopper-v5": tuned}) == ""


def test_targets_summary_writes_a_cv_that_rounds_to_the_bound_to_a_fourth_digit(monkeypatch):
    # 0.1501 misses CV <= 0.15: written "0.150" it would read as met
    estimate = {"iqm": 4338.8, "iqm_low": 3765.9, "iqm_high": 4673.1}
    rows = [
        {"env": env_id, "former": False, "n": 10, "steps": None, "target": 4933.0, "estimate": estimate, "cv": cv,
         "contrib": None}
        for env_id, cv in (("Walker2d-v5", 0.15009), ("Hopper-v5", 0.14996), ("Swimmer-v5", 0.2061))
    ]  # fmt: skip
    monkeypatch.setattr(report, "judged_targets", lambda records: rows)
    summary = report.targets_summary({})
    assert "CV <= 0.15: met on Hopper-v5 (0.1500); missed on Walker2d-v5 (0.1501) and Swimmer-v5 (0.206)." in summary


def test_exploration_table_reads_the_std_early_in_training_against_the_final_return(monkeypatch):
    monkeypatch.setattr(entries, "former_entries", dict)  # the Zoo's values as the current entry
    finals = [5000.0, 1800.0, 4500.0, 1700.0, 3000.0]
    records = _synthetic_records({"sb3_trpo": {"HalfCheetah-v5": finals}, "ppo": {"HalfCheetah-v5": finals}})
    for record in records:
        # std 0.1 * final / 1000 at 200k steps (the update nearest 20% of 1M), unrelated values elsewhere
        early = 0.1 * record["final_eval"]["mean"] / 1000
        record["updates"] = [
            {"timesteps": 150_000, "std": 9.0},
            {"timesteps": 204_800, "std": early},
            {"timesteps": 1_000_000, "std": 0.0},
        ]
    assert run_std_at(records[0], 0.2) == 0.5 and run_std_at({"budget": 1, "updates": []}, 0.2) is None
    by_env = {"HalfCheetah-v5": records}
    rows = report.exploration_table(by_env).splitlines()
    assert len(rows) == 3  # ours only, not PPO
    # Better half (5000, 4500) and worse half (1800, 1700), the middle run (3000) left out; std follows the final return
    assert rows[2] == "| HalfCheetah-v5 | sb3_trpo TRPO (ours) | 5 | 4750.0 / 1750.0 | 0.475 / 0.175 | 1.00 |"
    assert "action noise early in training" in report.tables(by_env)
    assert report.exploration_table({"HalfCheetah-v5": records[:3]}) == ""  # fewer than 4 runs


def test_merged_evaluation_records_count_a_run_in_two_folders_once(tmp_path, monkeypatch):
    # The grid's copy of an ablation run is the same run: the summary counts it once; other runs from both folders
    records = _synthetic_records({"sb3_trpo": {"Hopper-v5": [1.0, 2.0, 3.0]}})
    for folder, runs in (("grid", records), ("ablation", [*records[:2], {**records[0], "seed": 107}])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "Hopper-v5.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)
    merged = report.merged_evaluation_records(("grid", "ablation", "missing"))
    assert sorted(run["seed"] for run in merged["Hopper-v5"]) == [100, 101, 102, 107]
    # A different entry at the same seed is another run
    other = {**records[0], "hyperparams": {**records[0]["hyperparams"], "target_kl": 0.5}}
    (tmp_path / "ablation" / "Hopper-v5.jsonl").write_text(json.dumps(other) + "\n")
    assert sorted(run["seed"] for run in report.merged_evaluation_records(("grid", "ablation"))["Hopper-v5"]) == [
        100,
        100,
        101,
        102,
    ]


def test_evaluation_report_learning_curves(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    # Five runs, evaluated at 0, 10 and 20 steps (one run also at 15: only the common points count)
    runs = [
        {"learning_curve": [{"timesteps": step, "mean": float(seed * (step + 1))} for step in (0, 10, 20)]}
        for seed in range(1, 6)
    ]
    runs[0]["learning_curve"].insert(2, {"timesteps": 15, "mean": 99.0})
    steps, returns = stats.learning_curves(runs)
    assert steps.tolist() == [0, 10, 20] and returns.shape == (5, 3)
    curve = stats.iqm_curve(returns)
    # The IQM of 5 runs is the mean of the middle three (the 25% trimmed mean): seeds 2, 3, 4 -> 3 * (step + 1)
    assert np.allclose(curve["iqm"], [3.0, 33.0, 63.0])
    assert np.all(curve["low"] <= curve["iqm"]) and np.all(curve["iqm"] <= curve["high"])
    assert np.all(curve["high"] - curve["low"] > 0)
    # A figure per task with learning curves of the headline algorithms; a probability-of-improvement figure
    records = _synthetic_records({"sb3_trpo": {"Hopper-v5": [1.0, 2.0, 3.0]}, "sb3_contrib": {"Hopper-v5": [0.5, 1.0, 1.5]}})
    for record in records:
        record["learning_curve"] = [{"timesteps": step, "mean": record["final_eval"]["mean"] * step} for step in (0, 5, 10)]
    written = report.plot_learning_curves({"Hopper-v5": records}, tmp_path / "plots")
    assert written == [tmp_path / "plots" / "curves_Hopper-v5.png"] and written[0].stat().st_size > 0
    report.plot_probabilities_of_improvement({("a", "b"): {"poi": 0.7, "low": 0.6, "high": 0.8}}, tmp_path / "poi.png")
    assert (tmp_path / "poi.png").stat().st_size > 0


def test_masked_benchmark_runs_maskable_trpo_and_maskable_ppo_under_masks(tmp_path):
    # Each algorithm reads its own file; both are evaluated under the env's masks; ours carries its fingerprint
    command = [
        sys.executable, "-m", "benchmarks", "run", "--envs", "InvalidActionsDiscrete-v0", "--algos", "sb3_trpo_mask",
        "maskable_ppo", "--seeds", "100", "--n-timesteps", "2048", "--n-evals", "1", "--eval-episodes", "2",
        "--final-eval-episodes", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    records = {
        record["algo"]: record
        for record in map(json.loads, (tmp_path / "InvalidActionsDiscrete-v0.jsonl").read_text().splitlines())
    }
    assert set(records) == {"sb3_trpo_mask", "maskable_ppo"}
    assert Path(records["sb3_trpo_mask"]["config_file"]).name == "trpo_mask.yml"
    assert Path(records["maskable_ppo"]["config_file"]).name == "maskable_ppo.yml"
    assert records["sb3_trpo_mask"]["fingerprint"] and records["maskable_ppo"]["fingerprint"] is None
    for record in records.values():
        assert record["seed_role"] == "evaluation" and record["timesteps"] >= 2048
        # 40 of 50 actions masked at each step: an unmasked random policy would score about 2 per 100 steps
        assert record["final_eval"]["mean"] > 10
    args = grid.parse_args(["--algos", "sb3_trpo_mask", "--envs", "MaskedTaxi-v4"])
    assert grid.run_budget(args, "MaskedTaxi-v4") == 500_000
    assert "sb3_trpo_mask" not in grid.parse_args([]).algos


def test_recurrent_family_reads_its_own_files_and_budget():
    args = grid.parse_args(["--algos", "sb3_trpo_lstm", "recurrent_ppo", "--envs", "CartPoleNoVel-v1"])
    assert Path(grid.algo_config(args, "sb3_trpo_lstm")).name == "trpo_lstm.yml"
    assert Path(grid.algo_config(args, "recurrent_ppo")).name == "ppo_lstm.yml"  # the RL Zoo's RecurrentPPO file
    assert grid.run_budget(args, "CartPoleNoVel-v1") == 100_000
    assert ALGORITHMS["sb3_trpo_lstm"].load().__name__ == "RecurrentTRPO"
    assert ALGORITHMS["recurrent_ppo"].load().__name__ == "RecurrentPPO"
    # Mixed families: the TRPO file's budget
    mixed = grid.parse_args(["--algos", "sb3_trpo", "sb3_trpo_lstm"])
    assert grid.run_budget(mixed, "CartPole-v1") == 100_000
    assert ALGORITHMS["sb3_trpo_lstm"].entry.class_name == "RecurrentTRPO"


def test_masks_and_memory_benchmark_reads_its_own_file_and_the_maskable_budget():
    algos = ["sb3_trpo_mask_lstm", "sb3_trpo_mask", "maskable_ppo"]
    args = grid.parse_args(["--algos", *algos, "--envs", "MaskedCueMemory-v0"])
    assert Path(grid.algo_config(args, "sb3_trpo_mask_lstm")).name == "trpo_mask_lstm.yml"
    assert grid.run_budget(args, "MaskedCueMemory-v0") == 200_000  # every maskable algorithm: trpo_mask.yml's
    assert set(algos) <= {
        name for name, algorithm in ALGORITHMS.items() if algorithm.maskable
    }  # trained and evaluated under the env's masks
    assert ALGORITHMS["sb3_trpo_mask_lstm"].load().__name__ == "MaskableRecurrentTRPO"
    # evaluated with the helper that keeps the LSTM states under masks
    assert grid.evaluation_function(True).__module__ == "sb3_trpo.common.evaluation"
    assert ALGORITHMS["sb3_trpo_mask_lstm"].entry.class_name == "MaskableRecurrentTRPO"
    assert ALGORITHMS["sb3_trpo_mask_lstm"].label == "sb3_trpo MaskableRecurrentTRPO (ours)"


def test_a_task_the_rl_zoo_has_no_entry_for_has_no_zoo_settings_to_differ_from():
    # The Zoo's file falls back to another entry for CartPoleNoVel-v1 (trpo.yml has none): not the Zoo's settings
    record = {"algo": "sb3_trpo", "env": "CartPoleNoVel-v1", "hyperparams": {"policy": "MlpPolicy", "n_steps": 128}}
    assert entries.changes_from_rl_zoo(record) == {} and entries.is_headline(record)
    # a task it has an entry for (or a v4 entry, for v5) still is compared with it
    assert entries.changes_from_rl_zoo({**record, "env": "CartPole-v1"})
    assert entries.changes_from_rl_zoo({**record, "env": "Hopper-v5"})


def test_family_runs_are_compared_with_their_own_file_entry():
    # The Zoo has no file for RecurrentTRPO: a run of zoo_configs/trpo_lstm.yml's entry is the headline, a candidate's
    # run (another n_steps) is labeled by what it changes and never mixed into the headline's seeds
    config = zoo.load_config(REPO_ROOT / "zoo_configs" / "trpo_lstm.yml")
    entry = records.json_ready(config["PendulumNoVel-v1"])
    record = {"algo": "sb3_trpo_lstm", "env": "PendulumNoVel-v1", "hyperparams": entry}
    assert entries.is_headline(record) and entries.variant_label(record) == "sb3_trpo RecurrentTRPO (ours)"
    candidate = {**record, "hyperparams": {**entry, "n_steps": 7}}
    assert not entries.is_headline(candidate)
    assert entries.variant_label(candidate) == "sb3_trpo RecurrentTRPO (ours), n_steps=7"
    # A task its file has no entry for: nothing to differ from
    assert entries.is_headline({**candidate, "env": "CartPole-v1"})


def test_bench_distributed_writes_a_record_for_each_number_of_ranks(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "benchmarks", "bench", "distributed", "--env", "Pendulum-v1", "--ranks", "1", "2",
        "--updates", "1", "--repeats", "1", "--json", str(out),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads(out.read_text())
    assert set(record["median_steps_per_second"]) == {"1", "2"} and record["speedup"]["1"] == 1.0
    assert record["split"] == "n_steps"
    parts = record["seconds_per_update_rank_0"]
    assert parts["1"]["n_collectives"] == 0 and parts["2"]["n_collectives"] > 0
    assert 0 < parts["2"]["critic"] < parts["2"]["train"]
    assert record["median_steps_per_second_independent"]["2"] > 0 and set(record["ceiling_speedup"]) == {"2"}
    assert all(value > 0 for value in record["median_steps_per_second"].values())
    assert record["hardware"]["cpu_capability"] and len(record["git_commit"]) == 40


def test_curve_distributed_records_one_and_two_ranks_and_reports_them(tmp_path):
    out = tmp_path / "curves"
    command = [
        sys.executable, "-m", "benchmarks", "curves", "run", "--envs", "Pendulum-v1", "--seeds", "100",
        "--budget", "4096", "--eval-episodes", "1", "--final-eval-episodes", "2", "--out", str(out),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    records = [json.loads(line) for line in (out / "Pendulum-v1.jsonl").read_text().splitlines()]
    assert sorted((r["seed"], r["ranks"], r["n_envs_per_rank"]) for r in records) == [(100, 1, 2), (100, 2, 1)]
    for record in records:
        assert record["seed_role"] == "evaluation" and record["fingerprint"] and len(record["git_commit"]) == 40
        # the curve counts all ranks' steps, from the first evaluation (step 0) to the budget
        steps = [point["timesteps"] for point in record["learning_curve"]]
        assert steps[0] == 0 and steps[-1] == record["timesteps"] == 4096
        assert len(record["final_eval"]["returns"]) == 2
    # Resumable: a second run finds nothing to do
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "[start]" not in again.stdout
    report = subprocess.run(
        [sys.executable, "-m", "benchmarks", "curves", "report", "--out", str(out), "--plot", str(tmp_path / "c.png")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "| Pendulum-v1 | 1 | 1 | n < 2 |" in report.stdout and "| Pendulum-v1 | 2 | 1 | n < 2 |" in report.stdout
    assert (tmp_path / "c.png").stat().st_size > 0
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks", "curves", "run", "--seeds", "3", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "not a development seed" in refused.stderr


def test_bench_learn_times_evaluation_with_our_predict_and_sb3s(tmp_path):
    out = tmp_path / "predict.json"
    assert cli(["bench", "learn", "--envs", "Pendulum-v1", "--evaluate", "1", "--repeats", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    measured = record["median"]["Pendulum-v1"]
    assert measured["max_abs_action_difference"] == 0.0  # the same actions, bit for bit
    assert all(measured[key] > 0 for key in ("evaluate_ours", "evaluate_sb3", "predict_ours", "predict_sb3"))
    assert record["command"].startswith("python -m benchmarks bench learn --envs Pendulum-v1 --evaluate 1")
    assert record["hardware"]["cpu_capability"] and len(record["git_commit"]) == 40


def test_robustness_report_judges_each_candidate_against_the_entry_on_the_tuning_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    monkeypatch.setattr(entries, "former_entries", dict)  # an entry never replaced
    entry = [2000.0, 4000.0, 1800.0, 4500.0, 1900.0]
    (ours,) = [_synthetic_records({"sb3_trpo": {"HalfCheetah-v5": entry}})]
    records = [{**run, "seed": run["seed"] - 100, "seed_role": "tuning"} for run in ours]

    def candidate(change: dict, returns: list[float]) -> list[dict]:
        return [
            {**run, "hyperparams": {**run["hyperparams"], **change}, "final_eval": {"mean": value}}
            for run, value in zip(records[: len(returns)], returns, strict=True)
        ]

    better = candidate({"ent_coef": 0.01}, [4100.0, 4300.0, 3900.0, 4600.0, 2000.0])
    worse = candidate({"ent_coef": 0.001}, [1000.0, 1100.0, 900.0, 1200.0, 950.0])
    too_few = candidate({"target_kl": 0.05}, [9000.0, 9000.0, 9000.0])
    # A higher IQM than `better` and P > 0.5, but one run far below the entry's worst (1800 less 10% of its IQM,
    # 2633.3): the worst-run guard fails it, and `better` is chosen
    fails_once = candidate({"gamma": 0.995}, [4200.0, 4400.0, 4000.0, 4700.0, 1500.0])
    results = tmp_path / "robustness"
    results.mkdir()
    all_runs = records + better + worse + too_few + fails_once
    (results / "HalfCheetah-v5.jsonl").write_text("".join(json.dumps(run) + "\n" for run in all_runs))
    rows = {
        row.split(" | ")[1]: row.split(" | ")
        for row in tuning.robustness_table(tuning.tuning_records(str(results))).splitlines()[2:]
    }
    assert rows["sb3_trpo TRPO (ours)"][-1] == "entry |" and rows["sb3_trpo TRPO (ours)"][3] == "0,1,2,3,4"
    assert rows["sb3_trpo TRPO (ours), ent_coef=0.01"][-1] == "chosen |"
    # P(candidate > entry): the share of (candidate run, entry run) pairs the candidate wins, ties half
    wins = sum((c > e) + 0.5 * (c == e) for c in [4100.0, 4300.0, 3900.0, 4600.0, 2000.0] for e in entry) / 25
    assert rows["sb3_trpo TRPO (ours), ent_coef=0.01"][7].startswith(f"{wins:.2f} [")
    assert rows["sb3_trpo TRPO (ours), ent_coef=0.001"][-1] == "not chosen |"
    assert rows["sb3_trpo TRPO (ours), target_kl=0.05"][-1] == "pending |"  # 3 seeds: not judged, however high
    assert rows["sb3_trpo TRPO (ours), gamma=0.995"][-1] == "not chosen, a run far below the entry's worst |"
    assert tuning.verdicts(
        tuning.final_returns(records), {"fails_once": tuning.final_returns(fails_once)}, worst_run_guard=False
    ) == {"fails_once": "chosen"}
    assert tuning.worst_run_floor(np.array(entry), 2633.3) == pytest.approx(1800.0 - 263.33)
    assert rows["sb3_trpo TRPO (ours)"][4].startswith("2633.3 [")  # IQM of five: the mean of the middle three
    # --docs writes the table between the page's markers, and says so when the page has none
    page = tmp_path / "results.md"
    page.write_text(f"intro\n{tuning.ROBUSTNESS_MARKERS[0]}\nold\n{tuning.ROBUSTNESS_MARKERS[1]}\n")
    assert cli(["report", "robustness", "--results", str(results), "--docs", str(page)]) == 0
    assert "| HalfCheetah-v5 | sb3_trpo TRPO (ours), ent_coef=0.01 | 5 |" in page.read_text() and "old" not in page.read_text()
    page.write_text("no markers\n")
    assert cli(["report", "robustness", "--results", str(results), "--docs", str(page)]) == 1
    # Evaluation seeds are never read: the folder is refused
    evaluation = [{**run, "seed": run["seed"] + 100, "seed_role": "evaluation"} for run in records]
    (results / "HalfCheetah-v5.jsonl").write_text("".join(json.dumps(run) + "\n" for run in all_runs + evaluation))
    assert cli(["report", "robustness", "--results", str(results)]) == 2


def test_a_former_entry_keeps_its_results_and_the_candidates_are_judged_against_the_new_entry(tmp_path, monkeypatch):
    # Once a chosen candidate replaces the entry in zoo_configs/trpo.yml, the former entry's runs are labeled as
    # such and stay in the headline tables; the robustness table judges the entry that replaced it against it, and
    # every other candidate against the new entry (to replace the entry, a candidate has to beat the one in place)
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    (ours,) = [_synthetic_records({"sb3_trpo": {"HalfCheetah-v5": [2000.0, 4000.0, 1800.0, 4500.0, 1900.0]}})]
    former = {**ours[0]["hyperparams"], "target_kl": 0.03}
    current = {**former, "target_kl": "lin_0.06"}
    monkeypatch.setattr(entries, "former_entries", lambda: {"HalfCheetah-v5": [former]})
    monkeypatch.setattr(entries, "tuned_entries", lambda: {"HalfCheetah-v5": current})
    records = [{**run, "seed": run["seed"] - 100, "seed_role": "tuning", "hyperparams": former} for run in ours]
    promoted = [{**run, "hyperparams": current, "final_eval": {"mean": run["final_eval"]["mean"] + 100}} for run in records]
    other = [{**run, "hyperparams": {**former, "ent_coef": 0.01}} for run in records]
    # Better than the former entry (P 0.60), worse than the new one: judged against the new one, not chosen
    second = [
        {**run, "hyperparams": {**former, "target_kl": "lin_0.03"}, "final_eval": {"mean": run["final_eval"]["mean"] + 50}}
        for run in records
    ]
    assert entries.is_former_entry(records[0]) and not entries.is_tuned(records[0])
    assert entries.variant_label(records[0]) == "sb3_trpo TRPO (ours, former entry), target_kl=0.03"
    assert entries.is_headline(records[0]) and entries.is_headline(promoted[0])
    assert not entries.is_former_entry(other[0]) and not entries.is_headline(other[0])
    assert not entries.is_former_entry({**records[0], "algo": "sb3_contrib"})
    results = tmp_path / "robustness"
    results.mkdir()
    all_runs = records + promoted + other + second
    (results / "HalfCheetah-v5.jsonl").write_text("".join(json.dumps(run) + "\n" for run in all_runs))
    table = tuning.robustness_table(tuning.tuning_records(str(results))).splitlines()[2:]
    rows = {row.split(" | ")[1]: row.split(" | ")[-1] for row in table}
    assert rows == {
        "sb3_trpo TRPO (ours, former entry), target_kl=0.03": "former entry |",
        "sb3_trpo TRPO (ours, tuned), target_kl=lin_0.06": "chosen, now the entry |",
        "sb3_trpo TRPO (ours), ent_coef=0.01, target_kl=0.03": "not chosen |",
        "sb3_trpo TRPO (ours), target_kl=lin_0.03": "not chosen |",
    }
    poi = {row.split(" | ")[1]: row.split(" | ")[7] for row in table}

    def share(candidate: list[dict], baseline: list[dict]) -> float:
        # P(candidate > baseline): the share of (candidate run, baseline run) pairs the candidate wins, ties half
        pairs = [(c["final_eval"]["mean"], b["final_eval"]["mean"]) for c in candidate for b in baseline]
        return sum((c > b) + 0.5 * (c == b) for c, b in pairs) / len(pairs)

    assert poi["sb3_trpo TRPO (ours, former entry), target_kl=0.03"] == "-"
    assert poi["sb3_trpo TRPO (ours, tuned), target_kl=lin_0.06"].startswith(f"{share(promoted, records):.2f} [")
    assert share(second, records) > 0.5 > share(second, promoted)
    assert poi["sb3_trpo TRPO (ours), target_kl=lin_0.03"].startswith(f"{share(second, promoted):.2f} [")


def test_evaluation_summary_lists_each_task_s_current_entry_and_leaves_former_entries_to_the_full_table(monkeypatch):
    # The README's summary: one row per task and algorithm (ours with the task's current entry); the full table of
    # docs/results.md keeps the former entries' evaluation-seed rows beside it
    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    returns = {"sb3_trpo": {"Hopper-v5": [3000.0, 3100.0, 2900.0]}, "sb3_contrib": {"Hopper-v5": [2000.0, 2100.0, 1900.0]}}
    records = _synthetic_records(returns)
    ours = [run for run in records if run["algo"] == "sb3_trpo"]
    former = {**ours[0]["hyperparams"], "target_kl": 0.03}
    current = {**former, "target_kl": "lin_0.06"}
    monkeypatch.setattr(entries, "former_entries", lambda: {"Hopper-v5": [former]})
    monkeypatch.setattr(entries, "tuned_entries", lambda: {"Hopper-v5": current})
    runs = [run for run in records if run["algo"] != "sb3_trpo"]
    runs += [{**run, "hyperparams": former} for run in ours]
    runs += [{**run, "hyperparams": current, "final_eval": {"mean": run["final_eval"]["mean"] + 500}} for run in ours]
    by_env = {"Hopper-v5": runs}
    labels = {
        "full": [row.split(" | ")[1] for row in report.per_task_table(by_env).splitlines()[2:]],
        "summary": [row.split(" | ")[1] for row in report.evaluation_summary(by_env).splitlines()[2:5] if row.startswith("|")],
    }
    assert labels["full"] == [
        "sb3-contrib TRPO",
        "sb3_trpo TRPO (ours, former entry), target_kl=0.03",
        "sb3_trpo TRPO (ours, tuned), target_kl=lin_0.06",
    ]
    assert labels["summary"] == ["sb3-contrib TRPO", "sb3_trpo TRPO (ours, tuned), target_kl=lin_0.06"]
    # The rows it keeps are the full table's, cell for cell
    summary_rows = [row for row in report.evaluation_summary(by_env).splitlines()[2:] if row.startswith("| Hopper")]
    assert all(row in report.per_task_table(by_env).splitlines() for row in summary_rows)


def test_an_entry_replaced_twice_keeps_each_former_entry_s_verdict_against_the_one_it_replaced(tmp_path, monkeypatch):
    # A task whose entry was replaced twice (former_entries.yml, then former_entries_2.yml): both former entries are
    # labeled as such, the second keeps its verdict against the first, the entry its verdict against the second, and
    # the other candidates are judged against the entry
    from benchmarks import tuning as robustness

    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    (ours,) = [_synthetic_records({"sb3_trpo": {"Ant-v5": [1000.0, 1200.0, 900.0, 1300.0, 800.0]}})]
    first = {**ours[0]["hyperparams"], "target_kl": 0.08}
    second = {**first, "policy_kwargs": "dict(log_std_init=-1)"}
    current = {**first, "policy_kwargs": "dict(log_std_init=-1, net_arch=[256, 256])"}
    monkeypatch.setattr(entries, "former_entries", lambda: {"Ant-v5": [first, second]})
    monkeypatch.setattr(entries, "tuned_entries", lambda: {"Ant-v5": current})
    tuning = [{**run, "seed": run["seed"] - 100, "seed_role": "tuning"} for run in ours]

    def runs(hyperparams: dict, shift: float) -> list[dict]:
        return [
            {**run, "hyperparams": hyperparams, "final_eval": {"mean": run["final_eval"]["mean"] + shift}} for run in tuning
        ]

    # The second former entry far above the first, the entry a little above the second, a candidate between the two
    # former entries (better than the first, not than the entry it would replace)
    records = runs(first, 0.0) + runs(second, 2000.0) + runs(current, 2150.0) + runs({**first, "gamma": 0.995}, 1000.0)
    assert [entries.former_generation(run) for run in records[::5]] == [0, 1, None, None]
    assert entries.variant_label(records[5]) == (
        "sb3_trpo TRPO (ours, former entry), policy_kwargs=dict(log_std_init=-1), target_kl=0.08"
    )
    results = tmp_path / "robustness"
    results.mkdir()
    (results / "Ant-v5.jsonl").write_text("".join(json.dumps(run) + "\n" for run in records))
    table = robustness.robustness_table(robustness.tuning_records(str(results))).splitlines()[2:]
    rows = {row.split(" | ")[1]: (row.split(" | ")[7], row.split(" | ")[-1]) for row in table}
    labels = [row.split(" | ")[1] for row in table]
    assert rows == {
        "sb3_trpo TRPO (ours, former entry), target_kl=0.08": ("-", "former entry |"),
        labels[1]: (rows[labels[1]][0], "chosen, a former entry |"),
        labels[2]: (rows[labels[2]][0], "chosen, now the entry |"),
        "sb3_trpo TRPO (ours), gamma=0.995, target_kl=0.08": (rows[labels[3]][0], "not chosen |"),
    }
    assert "log_std_init=-1)" in labels[1] and "former entry" in labels[1] and "(ours, tuned)" in labels[2]

    # Each P against the row it replaced (or would replace): the second former entry beats the first in all 25 pairs
    # of runs, the entry the second in 18 of 25, the candidate the entry in none (the first former entry in all)
    def share(candidate: list[dict], baseline: list[dict]) -> float:
        pairs = [(c["final_eval"]["mean"], b["final_eval"]["mean"]) for c in candidate for b in baseline]
        return sum((c > b) + 0.5 * (c == b) for c, b in pairs) / len(pairs)

    assert rows[labels[1]][0].startswith(f"{share(records[5:10], records[:5]):.2f} [")
    assert rows[labels[2]][0].startswith(f"{share(records[10:15], records[5:10]):.2f} [")
    assert rows[labels[3]][0].startswith(f"{share(records[15:], records[10:15]):.2f} [")
    assert share(records[5:10], records[:5]) == 1.0 and share(records[10:15], records[5:10]) == 0.72
    assert share(records[15:], records[:5]) == 1.0 and share(records[15:], records[10:15]) == 0.0


def test_improvement_share_is_rliable_s_probability_of_improvement_bit_for_bit():
    # evaluation_report.probability_of_improvement bootstraps improvement_share in place of rliable's metric (SciPy's
    # Mann-Whitney test per task, about 100 times slower): the same float on every input, ties and equal runs included
    from rliable import metrics

    rng = np.random.default_rng(0)
    for trial in range(600):
        n_x, n_y, n_tasks = (int(value) for value in rng.integers(1, 12, size=3) % [12, 12, 4] + [0, 0, 1])
        x, y = rng.normal(size=(n_x, n_tasks)), rng.normal(size=(n_y, n_tasks))
        if trial % 3 == 1:  # many ties
            x, y = np.round(x), np.round(y)
        if trial % 3 == 2:  # one task where X's runs are Y's
            y = rng.normal(size=(n_x, n_tasks))
            y[:, 0] = x[:, 0]
        assert stats.improvement_share(x, y) == metrics.probability_of_improvement(x, y)
    assert stats.improvement_share(np.array([[1.0], [2.0]]), np.array([[2.0], [0.0]])) == 0.625  # (1 + 0.5 + 1 + 0) / 4


def test_interquartile_mean_is_rliable_s_aggregate_iqm_bit_for_bit():
    # evaluation_report's bootstraps (the learning curves' bands above all) call interquartile_mean in place of
    # rliable's aggregate_iqm (SciPy's trim_mean behind its array-API wrapper): the same float on every input, ties,
    # any number of runs and tasks, and the strided slices the curves' bootstrap hands it included
    from rliable import metrics

    rng = np.random.default_rng(1)
    for trial in range(600):
        n_runs, n_tasks = int(rng.integers(1, 25)), int(rng.integers(1, 5))
        scores = rng.normal(size=(n_runs, n_tasks)) * 10 ** rng.uniform(-3, 4)
        if trial % 3 == 1:  # many ties
            scores = np.round(scores)
        assert stats.interquartile_mean(scores) == metrics.aggregate_iqm(scores)
    curves = rng.normal(size=(10, 1, 21))
    assert all(stats.interquartile_mean(curves[..., p]) == metrics.aggregate_iqm(curves[..., p]) for p in range(21))
    assert stats.interquartile_mean(np.array([[1.0], [2.0], [3.0], [100.0]])) == 2.5  # the middle two of four


def test_carry_over_report_checks_each_replacement_on_the_evaluation_seeds(tmp_path, monkeypatch):
    # Each replacement of an entry (oldest first) with its tuning-seed evidence next to the evaluation seeds' outcome,
    # and the counts of those that carried over, split by whether the tuning P's whole CI was above 0.5
    from benchmarks import tuning as carry

    monkeypatch.setattr(stats, "BOOTSTRAP_REPS", 500)
    (ours,) = [_synthetic_records({"sb3_trpo": {"Ant-v5": [1000.0, 1200.0, 900.0, 1300.0, 800.0]}})]
    first = {**ours[0]["hyperparams"], "target_kl": 0.08}
    second = {**first, "policy_kwargs": "dict(log_std_init=-1)"}
    current = {**second, "gamma": 0.995}
    monkeypatch.setattr(entries, "former_entries", lambda: {"Ant-v5": [first, second]})
    monkeypatch.setattr(entries, "tuned_entries", lambda: {"Ant-v5": current})

    def runs(hyperparams: dict, returns: list[float], role: str) -> list[dict]:
        offset = 100 if role == "evaluation" else 0
        return [
            {**ours[0], "seed": offset + seed, "seed_role": role, "hyperparams": hyperparams, "final_eval": {"mean": value}}
            for seed, value in enumerate(returns)
        ]

    # The second former entry beats the first everywhere (a clear choice that carries over); the entry beats the
    # second in 16.5 of 25 pairs of tuning runs and loses on every evaluation seed; a candidate that never became an
    # entry is left out
    tuning = (
        runs(first, [1000.0, 1100.0, 900.0, 1200.0, 950.0], "tuning")
        + runs(second, [3000.0, 3100.0, 2900.0, 3200.0, 2950.0], "tuning")
        + runs(current, [3300.0, 3000.0, 3250.0, 2800.0, 3150.0], "tuning")
        + runs({**first, "ent_coef": 0.01}, [9000.0] * 5, "tuning")
    )
    evaluation = (
        runs(first, [1000.0, 1050.0, 1100.0, 980.0, 1020.0], "evaluation")
        + runs(second, [2800.0, 2900.0, 3000.0, 2850.0, 2950.0], "evaluation")
        + runs(current, [2000.0, 2100.0, 2200.0, 2050.0, 2150.0], "evaluation")
    )
    assert [carry.generation(run) for run in tuning[::5]] == [0, 1, 2, None]
    for folder, runs in (("tuning", tuning), ("evaluation", evaluation)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "Ant-v5.jsonl").write_text("".join(json.dumps(run) + "\n" for run in runs))
    rows = carry.replacements({"Ant-v5": tuning}, load_runs(str(tmp_path / "evaluation"), "evaluation"))
    assert [row["change"] for row in rows] == [
        "policy_kwargs default -> dict(log_std_init=-1)",
        "gamma 0.99 -> 0.995",
    ]
    assert [row["tuning_poi"][:4] for row in rows] == ["1.00", "0.66"]  # 25 of 25 pairs; 16.5 of 25
    assert rows[0]["tuning_iqm"] == "1016.7 -> 3016.7" and rows[1]["evaluation_iqm"] == "2900.0 -> 2100.0"
    assert [carry.clear_on_tuning(row) for row in rows] == [True, False]
    assert [carry.carried_over(row) for row in rows] == [True, False]
    table = carry.carry_over_table(rows)
    assert table.splitlines()[2].endswith("| 5 | 1023.3 -> 2900.0 | 1.00 [1.00, 1.00] | yes |")
    assert table.rstrip().endswith(
        "1 of 1 with the tuning seeds' P(new > old) whole 95% CI above 0.5; "
        "0 of 1 with the tuning seeds' P(new > old) 95% CI reaching 0.5 or below."
    )
    # Where the old entry never ran on the evaluation seeds there is nothing to check, and the count says so
    unchecked = carry.replacements({"Ant-v5": tuning}, {"Ant-v5": evaluation[5:]})
    assert carry.carried_over(unchecked[0]) is None and unchecked[0]["evaluation_iqm"] == "-"
    assert carry.carry_over_table(unchecked).rstrip().endswith("; 1 not run on both seed sets.")
    # While the new entry has run on some of the old one's evaluation seeds only, its estimates are shown and its
    # verdict waits: neither counted as carried over nor as not
    partial = carry.replacements({"Ant-v5": tuning}, {"Ant-v5": evaluation[:13]})
    assert [carry.pending(row) for row in partial] == [False, True] and partial[1]["evaluation_n"] == 3
    assert carry.carried_over(partial[1]) is None and partial[1]["evaluation_iqm"] == "2900.0 -> 2100.0"
    table = carry.carry_over_table(partial)
    assert table.splitlines()[3].endswith("| 3 | 2900.0 -> 2100.0 | 0.00 [0.00, 0.00] | pending (3 of 5) |")
    assert table.rstrip().endswith(
        "0 of 0 with the tuning seeds' P(new > old) 95% CI reaching 0.5 or below; "
        "1 pending (the new entry not yet on all the old one's evaluation seeds)."
    )
    assert carry.carry_over_table([]) == ""


# ---------------------------------------------------------------------------------------------------------------------
# Compact records (benchmarks.records): the per-update logs in side files, a summary of them in the records
# ---------------------------------------------------------------------------------------------------------------------


def _full_record(seed: int, algo: str = "sb3_trpo", finished_at: str = "2026-12-01T00:00:00+0000") -> dict:
    # A record as the harness wrote it before 0.2.0: the per-update log between the timings and the versions
    rng = np.random.default_rng(seed)
    updates = []
    for index in range(12):
        update = {"timesteps": 2048 * (index + 1), "ep_rew_mean": None if index < 2 else float(rng.normal(100, 30))}
        if algo == "sb3_trpo":
            # non-integer CG iterations too: their mean must still be statistics.mean's float exactly
            update |= {"std": float(1 - index / 20), "cg_iterations": float(rng.integers(3, 15)) + 0.1}
            update |= {"is_line_search_success": float(index % 3 != 0)}
        else:
            update |= {"approx_kl": 0.01}
        updates.append(update)
    return {
        "algo": algo, "env": "Hopper-v5", "seed": seed, "seed_role": "evaluation", "budget": 24576,
        "hyperparams": {"n_steps": 1024, "target_kl": 0.03 + seed / 1000}, "learning_curve": [{"timesteps": 0, "mean": 1.0}],
        "final_eval": {"mean": float(seed)}, "wall_clock_s": 2.0, "eval_s": 1.0, "steps_per_second": 100.0,
        "updates": updates, "versions": {"python": "3.12"}, "command": "python scripts/benchmark.py",
        "finished_at": finished_at,
    }  # fmt: skip


def test_compaction_round_trip_and_idempotence(tmp_path):
    originals = [_full_record(100), _full_record(101, "ppo"), _full_record(102), _full_record(100, finished_at="later")]
    original_lines = [json.dumps(record) for record in originals]
    path = tmp_path / "Hopper-v5.jsonl"
    path.write_text("".join(line + "\n" for line in original_lines))
    assert records.compact_file(path) == 4
    side = tmp_path / "Hopper-v5.updates.jsonl.xz"
    compact = [json.loads(line) for line in path.read_text().splitlines()]
    for before, after in zip(originals, compact, strict=True):
        # the summary in the log's place, every other key and value as it was
        assert list(after) == [("updates_summary" if key == "updates" else key) for key in before]
        assert after["updates_summary"] == records.summarize(before["updates"], before["budget"])
    assert len(records.read_logs(side)) == 4
    # Re-attaching the logs gives the original lines exactly (the run present twice included, by when it finished)
    assert [json.dumps(record) for record in records.attached(path)] == original_lines
    # Idempotent: nothing to compact, nothing written
    compacted, logs = path.read_bytes(), side.read_bytes()
    assert records.compact_file(path) == 0 and path.read_bytes() == compacted and side.read_bytes() == logs
    # A line of the old harness appended since (a running grid's) is compacted alone, its log appended
    late = json.dumps(_full_record(103))
    with open(path, "a") as file:
        file.write(late + "\n")
    assert records.compact_file(path) == 1 and path.read_text().startswith(compacted.decode())
    assert [json.dumps(record) for record in records.attached(path)] == [*original_lines, late]
    # A compaction interrupted after writing its logs, run again: no log twice
    path.write_text(compacted.decode() + late + "\n")
    assert records.compact_file(path) == 1 and len(records.read_logs(side)) == 5
    # The data-parallel curves' records log no updates: left as they are
    plain = tmp_path / "Pendulum-v1.jsonl"
    plain.write_text(json.dumps({"algo": "sb3_trpo", "env": "Pendulum-v1", "seed": 100, "budget": 1}) + "\n")
    before = plain.read_bytes()
    assert records.compact_file(plain) == 0 and plain.read_bytes() == before and not records.side_path(plain).exists()


def test_compact_summary_is_what_the_reports_read_from_the_log(tmp_path):
    full = [_full_record(seed) for seed in (100, 101, 102)] + [_full_record(100, "ppo")]
    compact = [records.compact_record(record)[0] for record in full]
    for before, after in zip(full, compact, strict=True):
        log = before["updates"]
        assert records.run_drop_share(after) == records.drop_share([update.get("ep_rew_mean") for update in log])
        assert records.run_std_at(after, records.EARLY) == records.run_std_at(before, records.EARLY)
        assert records.summary(after) == records.summary(before)
    assert records.run_std_at(compact[0], records.EARLY) == 1 - 1 / 20  # nearest 20% of 24,576 steps: the update at 4,096
    assert records.run_std_at(compact[3], records.EARLY) is None  # PPO logs no std
    with pytest.raises(ValueError, match="fetch the per-update logs"):
        records.run_std_at(compact[0], 0.5)  # a compact record has the std early in training only
    # The ablation's means over every update of the runs: the same floats as statistics.mean over the logs
    cg = [update["cg_iterations"] for record in full[:3] for update in record["updates"]]
    assert records.mean_of(records.summary(record)["cg_iterations"] for record in compact[:3]) == statistics.mean(cg)
    assert ablation.summarize(compact[:3]) == ablation.summarize(full[:3])
    ppo = ablation.summarize(compact[3:])  # no CG, no line search
    assert np.isnan(ppo["cg_iterations"]) and ppo["line_search_success"] is None
    # The results table (drops column) is the same from either
    assert plot.tables({"Hopper-v5": compact}) == plot.tables({"Hopper-v5": full})
    assert "updates_summary" not in full[0] and "updates" not in compact[0]


def test_benchmark_appends_compact_records(tmp_path):
    path = tmp_path / "Hopper-v5.jsonl"
    originals = [_full_record(100), _full_record(101)]
    for record in originals:
        records.append_record(path, record)
    assert all("updates" not in json.loads(line) for line in path.read_text().splitlines())
    assert list(records.attached(path)) == originals
    assert records.compact_file(path) == 0  # already compact


def test_records_branch_publish_and_fetch(tmp_path, monkeypatch):
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "main"], check=True)
    monkeypatch.setattr(records, "REPO_ROOT", repo)
    path = repo / "benchmarks" / "results" / "Hopper-v5.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_full_record(100)) + "\n")
    records.compact_file(path)
    side = records.side_path(path)
    first = records.publish("logs")
    assert first is not None and records.publish("logs") is None  # nothing new
    show = subprocess.run(["git", "-C", str(repo), "show", f"records:{side.relative_to(repo)}"], capture_output=True)
    assert show.stdout == side.read_bytes()
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "main"], capture_output=True, text=True).stdout
    # A fresh tree: fetch writes the side file back; a later run's log goes on top of the branch's last commit
    side.unlink()
    assert records.fetch("records") == 1 and [json.loads(line) for line in path.read_text().splitlines()]
    assert [record["seed"] for record in records.attached(path)] == [100]
    with open(path, "a") as file:
        file.write(json.dumps(_full_record(101)) + "\n")
    records.compact_file(path)
    second = records.publish("more logs")
    parent = subprocess.run(["git", "-C", str(repo), "rev-parse", f"{second}^"], capture_output=True, text=True)
    assert parent.stdout.strip() == first
    # main is untouched; a side file that lacks the branch's logs is refused
    assert subprocess.run(["git", "-C", str(repo), "rev-parse", "main"], capture_output=True, text=True).stdout == head
    side.write_bytes(records._compressed(records.read_logs(side)[1:]))
    with pytest.raises(RuntimeError, match="fetch first"):
        records.publish("lost logs")


def test_headline_counts_the_judged_targets_and_states_the_like_for_like_verdict_once_complete():
    # issue 52: the headline's verdicts come from the records. The targets line counts the tuned entries judged on
    # ten confirmation seeds (met or missed) and those pending; once every like-for-like task has ten runs of both,
    # one sentence says where the CI of P(ours > sb3-contrib) lies wholly above 0.5, wholly below it, or holds it
    def run(score: float, budget: int = 1_000_000) -> dict:
        return {"final_eval": {"mean": score}, "train_s": 60.0, "budget": budget, "learning_curve": []}

    spread = np.arange(10, dtype=float) * 100
    tasks = [task for task in report.HEADLINE_TASKS if task != "Humanoid-v5"]
    contrib = {task: [run(1000 + value) for value in spread] for task in tasks}
    ours = {task: [run(1000 + value + 50) for value in spread] for task in tasks}  # interleaved: P about 0.5
    ours["HalfCheetah-v5"] = [run(5000 + value) for value in spread]  # every run above every run of sb3-contrib
    ours["Hopper-v5"] = [run(value - 2000) for value in spread]  # every run below
    tuned = {
        "HalfCheetah-v5": [run(6000 + value) for value in spread],  # IQM 6450 >= 5800: met
        "Hopper-v5": [run(3000 + value) for value in spread],  # 3450 < 3618: missed
        "Walker2d-v5": [run(9000)] * 9,  # 9 of 10: pending, not judged
        # one run so far, judged at 1M of its 2M steps: the targets line shows it, as the table does
        "Humanoid-v5": [{**run(2000, 2_000_000), "learning_curve": [{"timesteps": 1_000_000, "mean": 912.5}]}],
    }
    development = {"HalfCheetah-v5": [run(7000 + value) for value in spread], "Walker2d-v5": [run(8000)] * 10}
    columns = {"contrib_settings": ours, "tuned": tuned, "sb3_contrib": contrib, "ppo": {}, "development": development}
    text = report.headline_table(columns)
    assert "judged on the confirmation seeds only (1 met of 2 judged, 4 pending): HalfCheetah-v5 met" in text
    # the same entry on the development seeds beside its confirmation result, for the judged tasks that have both
    development_line = next(line for line in text.splitlines() if line.startswith("Each judged entry"))
    assert development_line.endswith(": HalfCheetah-v5 7450.0 [7233.3, 7666.7] (n=10) and 6450.0 [6233.3, 6666.7] (n=10).")
    assert "Hopper-v5 **missed** (3450.0 against 3618)" in text and "Walker2d-v5 pending (9 of 10)" in text
    assert "Humanoid-v5 pending (1 of 10) (912.5 against 810)" in text and "| 912.5 (n=1) |" in text
    # a task with runs of the tuned entry only says why its other cells are dashes
    assert "A dash: no runs. Humanoid-v5 has runs of the tuned entry only: neither peer nor" in text
    assert "A dash" not in report.headline_table({**columns, "tuned": {**tuned, "Humanoid-v5": []}})
    assert (
        "The like-for-like grid is complete (10 seeds per task for both): the 95% CI of P holds 0.5 on Walker2d-v5, "
        "Ant-v5 and Swimmer-v5: no difference in learning that 10 seeds resolve; it lies wholly above 0.5 on "
        "HalfCheetah-v5: ours learns more there; it lies wholly below 0.5 on Hopper-v5: sb3-contrib's TRPO learns more "
        "there." in text
    )
    # one task short of ten runs (of either algorithm): no verdict yet
    for short in ({**ours, "Swimmer-v5": ours["Swimmer-v5"][:9]}, ours):
        peers = contrib if short is not ours else {**contrib, "Ant-v5": contrib["Ant-v5"][:9]}
        text = report.headline_table({**columns, "contrib_settings": short, "sb3_contrib": peers})
        assert "P(ours > sb3-contrib's TRPO), like for like" in text and "grid is complete" not in text


def test_headline_minutes_are_the_side_by_side_speeds_per_million_steps(tmp_path):
    # issue 52: learn() minutes side by side, from one process on one core (bench learn's JSON), not from the runs'
    # own times on shared machines of different kinds
    bench = {
        "median_steps_per_s": {"Hopper-v5": {"ours_contrib_settings": 2000.0, "sb3_contrib": 1000.0}},
        "hardware": {"cpu": "Some CPU"},
    }
    (tmp_path / "bench_learn.json").write_text(json.dumps(bench))
    minutes, cpu = report.side_by_side_minutes(tmp_path / "bench_learn.json")
    assert cpu == "Some CPU" and minutes == {"Hopper-v5": pytest.approx((1e6 / 2000 / 60, 1e6 / 1000 / 60))}
    assert report.side_by_side_minutes(tmp_path / "missing.json") == ({}, "-")
    table = report.headline_table({"contrib_settings": {}, "tuned": {}, "sb3_contrib": {}, "ppo": {}})
    measured, _ = report.side_by_side_minutes()
    for env_id, (ours, contrib) in measured.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {env_id} |"))
        assert row.endswith(f"| {ours:.1f} / {contrib:.1f} |")
    assert next(line for line in table.splitlines() if line.startswith("| Humanoid-v5 |")).endswith("| - / - |")
