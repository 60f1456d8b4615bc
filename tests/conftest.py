"""Shared fixtures: tiny policies and helpers for exact numerical checks."""

import pytest
import torch as th


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Keep every test on one torch thread (the CI machine has 2 cores) and restore the setting afterwards."""
    n_threads = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n_threads)


class LogRecorder:
    """
    Every value a model logs, one list per key (in update order): attach to a model, then train it.

    :param model: an SB3 algorithm; its logger is replaced by a silent one whose ``record`` also keeps the values
    """

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(None, []))
        self.values: dict[str, list] = {}
        real_record = model.logger.record

        def record(key: str, value, exclude=None) -> None:  # type: ignore[no-untyped-def]
            self.values.setdefault(key, []).append(value)
            real_record(key, value, exclude)

        model.logger.record = record


def assert_same_state(model, loaded, names) -> None:  # type: ignore[no-untyped-def]
    """
    A loaded model holds the saved one's options, warm-start direction, policy weights and optimizer state, exactly.

    :param model: the model that was saved
    :param loaded: the model loaded from its file
    :param names: the attributes (options, state) to compare
    """
    for name in names:
        assert getattr(loaded, name) == getattr(model, name), name
    assert th.equal(loaded._cg_previous_direction, model._cg_previous_direction)
    state, loaded_state = model.policy.state_dict(), loaded.policy.state_dict()
    assert list(state) == list(loaded_state) and all(th.equal(state[key], loaded_state[key]) for key in state)
    adam, adam_loaded = model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()
    for moments, loaded_moments in zip(adam["state"].values(), adam_loaded["state"].values(), strict=True):
        assert all(th.equal(moments[key], loaded_moments[key]) for key in moments)


def accepted_kls(recorder: LogRecorder) -> list[float]:
    """
    :param recorder: the logs of a TRPO-family model
    :return: the KL logged after each update whose line search accepted a step
    """
    pairs = zip(recorder.values["train/kl_divergence_loss"], recorder.values["train/is_line_search_success"], strict=True)
    return [kl for kl, accepted in pairs if accepted]
