"""endp-twin and vdp-twin: the twin holds exactly the moment net's mean parameters, layer by layer, and with every
variance at zero the moment net's mean path computes the twin's function on the same weights (a twin with another
activation or pooling order does not); trained with cross-entropy on the moment plugin's budget."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers.moments import GaussianConv2d, GaussianLinear
from benchmark.models.endp import EnDP
from benchmark.models.moment_twins import EnDPTwin, VDPTwin, deterministic_twin
from benchmark.models.vdp import VDP
from benchmark.plugin import Task
from benchmark.registry import get_plugin_class

MNIST = Task("mnist", (1, 28, 28), 10, n_train=100)
CIFAR = Task("cifar10", (3, 32, 32), 10, n_train=100)
PAIRS = [(EnDPTwin, EnDP), (VDPTwin, VDP)]

pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def _gaussian(network):
    return [m for m in network if isinstance(m, GaussianConv2d | GaussianLinear)]


def _point(network):
    return [m for m in network if isinstance(m, nn.Conv2d | nn.Linear)]


def _zero_variance_pair(twin_class, moment_class, task):
    """The moment net with wide random means and every variance zero, and a twin holding those means."""
    moment = moment_class().build(task).eval()
    twin = twin_class().build(task).eval()
    with torch.no_grad():
        for g, p in zip(_gaussian(moment), _point(twin), strict=True):
            g.weight.normal_(0, 2 * g.weight[0].numel() ** -0.5)  # nonlinearities well exercised
            g.bias.normal_(0, 0.1)
            g.rho.fill_(-200.0)  # softplus(-200) underflows to 0: no weight variance
            p.weight.copy_(g.weight)
            p.bias.copy_(g.bias)
    return moment, twin


@pytest.mark.parametrize("task", [MNIST, CIFAR])
@pytest.mark.parametrize("twin_class, moment_class", PAIRS)
def test_twin_has_the_moment_nets_mean_parameters_layer_by_layer(twin_class, moment_class, task):
    moment, twin = moment_class().build(task), twin_class().build(task)
    gaussian, point = _gaussian(moment), _point(twin)
    assert len(gaussian) == len(point) > 0
    for g, p in zip(gaussian, point, strict=True):
        assert p.weight.shape == g.weight.shape and p.bias.shape == g.bias.shape
        if isinstance(g, GaussianConv2d):
            assert isinstance(p, nn.Conv2d) and p.stride == (g.stride,) * 2 and p.padding == (g.padding,) * 2
        else:
            assert isinstance(p, nn.Linear)
    mean_parameters = sum(g.weight.numel() + g.bias.numel() for g in gaussian)
    assert sum(p.numel() for p in twin.parameters()) == mean_parameters
    assert len(twin) == len(moment)  # one layer per moment layer, nothing added or dropped


@pytest.mark.parametrize("task", [MNIST, CIFAR])
@pytest.mark.parametrize("twin_class, moment_class", PAIRS)
def test_zero_variance_mean_path_computes_the_twins_function(twin_class, moment_class, task):
    moment, twin = _zero_variance_pair(twin_class, moment_class, task)
    x = torch.rand(3, *task.input_shape)
    with torch.no_grad():
        mean, var = moment(x)
        logits = twin(x)
    assert var.abs().max() < 1e-8  # the moment net really is a point mass
    assert logits.abs().max() > 1  # a non-trivial function
    torch.testing.assert_close(mean, logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("twin_class, moment_class", PAIRS)
def test_a_twin_with_another_activation_computes_another_function(twin_class, moment_class):
    """The comparison above has teeth: swapping ELU and ReLU in the twin breaks it."""
    moment, twin = _zero_variance_pair(twin_class, moment_class, MNIST)
    swapped = nn.Sequential(*(nn.ReLU() if isinstance(m, nn.ELU) else nn.ELU() if isinstance(m, nn.ReLU) else m
                              for m in twin))
    x = torch.rand(3, *MNIST.input_shape)
    with torch.no_grad():
        assert not torch.allclose(moment(x)[0], swapped(x), rtol=1e-4, atol=1e-4)


def test_twin_activations_are_the_papers():
    assert {type(m) for m in EnDPTwin().build(MNIST)} >= {nn.ELU} and nn.ReLU not in map(type, EnDPTwin().build(CIFAR))
    assert {type(m) for m in VDPTwin().build(CIFAR)} >= {nn.ReLU} and nn.ELU not in map(type, VDPTwin().build(MNIST))


def test_deterministic_twin_refuses_layers_it_does_not_know():
    with pytest.raises(TypeError, match="no deterministic twin"):
        deterministic_twin(nn.Sequential(nn.Dropout()))


@pytest.mark.parametrize("profile", ["quick", "standard"])
@pytest.mark.parametrize("task", [MNIST, CIFAR])
@pytest.mark.parametrize("twin_class, moment_class", PAIRS)
def test_recipe_is_the_moment_budget_at_the_baselines_rate_with_cross_entropy(twin_class, moment_class, task,
                                                                              profile):
    task = replace(task, profile=profile)
    config = twin_class().train_config(task)
    assert config == replace(moment_class().train_config(task), lr=1e-3)
    assert twin_class.predictive == "deterministic" and get_plugin_class(twin_class.name) is twin_class
    logits, y = torch.randn(5, 10), torch.randint(0, 10, (5,))
    torch.testing.assert_close(twin_class().loss(None, logits, y, task), F.cross_entropy(logits, y))
