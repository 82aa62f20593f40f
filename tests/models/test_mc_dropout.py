"""MC dropout's deterministic trunk: the convolutions run once per input, the dropout head once per draw, and
every draw, loss and gradient is what the whole network gives under the same seed."""

import pytest
import torch
from fakes import RowCounter
from torch import nn

from benchmark.attacks import input_gradient
from benchmark.plugin import Task
from benchmark.predictive import Predictor
from benchmark.registry import create_model
from benchmark.validate import validate_plugin

TASK = Task("mnist", (1, 28, 28), 10, 100, "quick")


@pytest.fixture
def network():
    torch.manual_seed(0)
    return create_model("mc-dropout").build(TASK).eval()


def test_the_split_gives_the_same_draws_losses_and_gradients(network):
    plugin = create_model("mc-dropout")
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    whole = Predictor(network, "stochastic")
    split = Predictor(network, "stochastic", trunk=plugin.deterministic_trunk(network))
    results = []
    for predictor in (whole, split):
        torch.manual_seed(1)
        draws = predictor.draw_log_probs(x, 5)
        torch.manual_seed(2)
        g = input_gradient(predictor, x, y, 8)
        results.append((draws, g.loss, g.grad))
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert results[0][0].std(0).mean() > 0  # the draws differ: dropout is on


def test_the_trunk_runs_once_per_input_and_the_head_once_per_draw(network):
    trunk, head = create_model("mc-dropout").deterministic_trunk(network)
    trunk, head = RowCounter(trunk), RowCounter(head)
    predictor = Predictor(network, "stochastic", trunk=(trunk, head))
    predictor.log_predictive(torch.rand(4, 1, 28, 28), 20)
    assert (trunk.rows, head.rows) == (4, 80)
    assert not any(isinstance(m, nn.Dropout) or "Dropout" in type(m).__name__ for m in trunk.modules())


def test_a_trunk_that_draws_randomness_fails_validation():
    class RandomTrunk(type(create_model("mc-dropout"))):
        def deterministic_trunk(self, network):  # cuts after the first dropout layer: the trunk draws
            first = next(i for i, m in enumerate(network) if "Dropout" in type(m).__name__)
            return network[:first + 1], network[first + 1:]

    checks = {c.name: c for c in validate_plugin(RandomTrunk(), shapes=((1, 28, 28),))}
    assert checks["deterministic trunk(1x28x28)"].ok is False
    assert "draws randomness" in checks["deterministic trunk(1x28x28)"].detail
    good = {c.name: c for c in validate_plugin(create_model("mc-dropout"), shapes=((1, 28, 28),))}
    assert good["deterministic trunk(1x28x28)"].ok


def test_only_a_stochastic_predictor_takes_a_trunk(network):
    with pytest.raises(ValueError, match="stochastic"):
        Predictor(network, "deterministic", trunk=(network[:1], network[1:]))
