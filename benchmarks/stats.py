"""
Interval estimates of the results (rliable's, with its stratified bootstrap): IQM and mean with 95% CIs, the
probability of improvement, IQM learning curves; and how the tables write them.
"""

import warnings
from typing import Any

import numpy as np

BOOTSTRAP_REPS = 5000


def _bootstrap(score_dict: dict[str, Any], aggregate: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from rliable import library as rly

    with warnings.catch_warnings():
        # arch deprecates the RandomState that rliable hands it; the draws are the same
        warnings.simplefilter("ignore", FutureWarning)
        np.random.seed(0)  # parts of the bootstrap draw from NumPy's global generator: the same CIs on every call
        return rly.get_interval_estimates(
            score_dict, aggregate, reps=BOOTSTRAP_REPS, confidence_interval_size=0.95, random_state=np.random.RandomState(0)
        )


def interquartile_mean(scores: np.ndarray) -> float:
    """
    rliable's ``metrics.aggregate_iqm`` (SciPy's ``trim_mean(scores, 0.25, axis=None)``), bit for bit: the mean of
    the middle half of all the values, after the same partition. The bootstraps call it hundreds of thousands of
    times (every point of every learning curve, 5000 times): SciPy's array-API wrapper costs about 0.3 ms a call,
    these three NumPy operations a few microseconds.

    :param scores: any shape (runs x tasks), flattened
    :return: the 25% trimmed mean
    """
    flat = np.asarray(scores).ravel()
    cut = int(0.25 * flat.size)
    middle = np.partition(flat, (cut, flat.size - cut - 1))[cut : flat.size - cut]
    return float(np.mean(middle.astype(np.float64, copy=False)))


def iqm_and_mean(scores: np.ndarray | list[float]) -> dict[str, float]:
    """
    IQM and mean with stratified-bootstrap 95% CIs (rliable; tasks are the strata).

    :param scores: final returns (or normalized scores), shape (n_runs, n_tasks), or (n_runs,) for one task
    :return: ``iqm``, ``iqm_low``, ``iqm_high``, ``mean``, ``mean_low``, ``mean_high``
    """
    from rliable import metrics

    def aggregate(values: np.ndarray) -> np.ndarray:
        return np.array([interquartile_mean(values), metrics.aggregate_mean(values)])

    matrix = np.asarray(scores, dtype=np.float64)
    point, interval = _bootstrap({"scores": matrix.reshape(-1, 1) if matrix.ndim == 1 else matrix}, aggregate)
    (iqm, mean), ((iqm_low, mean_low), (iqm_high, mean_high)) = point["scores"], interval["scores"]
    return {"iqm": iqm, "iqm_low": iqm_low, "iqm_high": iqm_high, "mean": mean, "mean_low": mean_low, "mean_high": mean_high}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """
    ``P(X > Y)``: the probability that a run of X beats a run of Y on the same task, averaged over tasks (ties count
    half), with a stratified-bootstrap 95% CI (rliable).

    :param x: scores of X, shape (n_runs_x, n_tasks), or (n_runs_x,) for one task
    :param y: scores of Y, likewise
    :return: ``poi``, ``low``, ``high``
    """
    pair = [np.asarray(scores, np.float64) for scores in (x, y)]
    pair = [scores.reshape(-1, 1) if scores.ndim == 1 else scores for scores in pair]
    point, interval = _bootstrap({"pair": pair}, improvement_share)
    low, high = np.ravel(interval["pair"])
    return {"poi": float(np.ravel(point["pair"])[0]), "low": float(low), "high": float(high)}


def improvement_share(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """
    rliable's ``metrics.probability_of_improvement``, bit for bit, without its Mann-Whitney test per task: per task,
    the share of (X run, Y run) pairs that X wins, ties half (the Mann-Whitney U over the number of pairs; 0.5 where
    X's and Y's runs are the same), averaged over tasks. The bootstrap calls it thousands of times: SciPy's test
    costs about 2 ms a call, this about 20 us.

    :param scores_x: shape (n_runs_x, n_tasks)
    :param scores_y: shape (n_runs_y, n_tasks)
    :return: P(X > Y) averaged over tasks
    """
    shares = []
    for task in range(scores_x.shape[1]):
        x, y = scores_x[:, task], scores_y[:, task]
        if np.array_equal(x, y):
            shares.append(0.5)
        else:
            # U: the pairs X wins plus half the ties, an exact float (integers and halves), as SciPy's rank sums give it
            wins = float(np.count_nonzero(x[:, None] > y[None, :])) + 0.5 * float(np.count_nonzero(x[:, None] == y[None, :]))
            shares.append(wins / (len(x) * len(y)))
    return float(np.mean(shares))


def coefficient_of_variation(values: list[float] | np.ndarray) -> float:
    """
    :param values: final returns of the seeds
    :return: std / |mean| (population std; NaN when the mean is 0)
    """
    mean = float(np.mean(values))
    return float(np.std(values) / abs(mean)) if mean != 0 else float("nan")


def learning_curves(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """
    The runs' learning curves on their common evaluation points.

    :param runs: the runs of one algorithm on one task (each with ``learning_curve``: ``timesteps`` and ``mean``)
    :return: the timesteps (n_points,) and the mean evaluated returns (n_runs, n_points) at the points every run has
    """
    curves = [{point["timesteps"]: point["mean"] for point in run["learning_curve"]} for run in runs]
    common = sorted(set.intersection(*(set(curve) for curve in curves))) if curves else []
    return np.array(common), np.array([[curve[step] for step in common] for curve in curves], dtype=np.float64)


def iqm_curve(returns: np.ndarray) -> dict[str, np.ndarray]:
    """
    IQM over runs at each evaluation point, with stratified-bootstrap 95% CIs (rliable; one task).

    :param returns: shape (n_runs, n_points)
    :return: ``iqm``, ``low``, ``high``, each of shape (n_points,)
    """

    def aggregate(values: np.ndarray) -> np.ndarray:
        # values: (n_runs, 1 task, n_points)
        return np.array([interquartile_mean(values[..., point]) for point in range(values.shape[-1])])

    point, interval = _bootstrap({"curve": np.asarray(returns, np.float64)[:, None, :]}, aggregate)
    return {"iqm": point["curve"], "low": interval["curve"][0], "high": interval["curve"][1]}


def with_ci(estimate: dict[str, float], name: str, digits: int) -> str:
    """:return: ``estimate[name] [low, high]`` (``iqm_and_mean``'s keys ``name``, ``name_low``, ``name_high``)"""
    return f"{estimate[name]:.{digits}f} [{estimate[name + '_low']:.{digits}f}, {estimate[name + '_high']:.{digits}f}]"


def poi_with_ci(poi: dict[str, float]) -> str:
    """:return: ``P [low, high]`` of :func:`probability_of_improvement`"""
    return f"{poi['poi']:.2f} [{poi['low']:.2f}, {poi['high']:.2f}]"
