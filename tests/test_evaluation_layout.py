"""The harness evaluates every network laid out channels_last (``benchmark.runner.evaluation_layout``): every
registered plugin must run in it, forward and backward, and a deterministic one must decide as it does in the
default layout."""

import pytest
import torch

from benchmark.plugin import Task
from benchmark.predictive import Predictor
from benchmark.registry import create_model, list_models
from benchmark.runner import evaluation_layout

SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=["mnist", "cifar"])
@pytest.mark.parametrize("name", list_models())
def test_every_plugin_runs_channels_last_and_deterministic_ones_decide_the_same(name, shape):
    plugin = create_model(name)
    if not plugin.supports(shape):
        pytest.skip(f"{name} does not build for {shape}")
    torch.manual_seed(0)
    network = plugin.build(Task("layout", shape, 10, 100)).eval()
    x = torch.rand(6, *shape)
    before = Predictor(network, plugin.predictive).log_predictive(x, 2).detach()
    predictor = Predictor(evaluation_layout(network), plugin.predictive)
    conv = next((p for p in network.parameters() if p.dim() == 4), None)
    assert conv is None or conv.is_contiguous(memory_format=torch.channels_last)
    points = x.clone().requires_grad_(True)
    after = predictor.log_predictive(points, 2)
    assert after.shape == before.shape and torch.isfinite(after).all()
    if after.requires_grad:  # snn-noise's attacks follow its likelihood-ratio objective, not autograd
        (grad,) = torch.autograd.grad(after.sum(), points)
        assert torch.isfinite(grad).all()
    if plugin.predictive != "stochastic":
        assert torch.allclose(after, before, atol=1e-5)
