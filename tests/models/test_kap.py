"""KAP: the layer against an explicit channel mean written with loops, and the plugin's network and recipe."""

import pytest
import torch
from torch import nn

from benchmark.layers.cnn import make_cnn
from benchmark.models.kap import KAP, KAP2D, KernelAveragePool, channel_grid
from benchmark.plugin import Task

SMALL = Task("mnist", (1, 28, 28), 10, n_train=100)
CIFAR = Task("cifar10", (3, 32, 32), 10, n_train=100)


def _channel_mean_by_loops(a, k):
    """y[:, c] = mean of a[:, j] over the channels j that exist with |j - c| <= k // 2."""
    out = torch.empty_like(a)
    channels = a.shape[1]
    for c in range(channels):
        neighbours = [j for j in range(c - k // 2, c + k // 2 + 1) if 0 <= j < channels]
        out[:, c] = sum(a[:, j] for j in neighbours) / len(neighbours)
    return out


def _grid_mean_by_loops(a, k, rows, cols):
    """Channels laid out row-major on a rows x cols grid; mean over the K x K grid neighbours that exist."""
    out = torch.empty_like(a)
    for r in range(rows):
        for c in range(cols):
            neighbours = [rr * cols + cc for rr in range(r - k // 2, r + k // 2 + 1)
                          for cc in range(c - k // 2, c + k // 2 + 1)
                          if 0 <= rr < rows and 0 <= cc < cols]
            out[:, r * cols + c] = sum(a[:, j] for j in neighbours) / len(neighbours)
    return out


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("channels", [1, 2, 7, 16])
def test_kap_is_the_mean_over_neighbouring_channels(k, channels):
    torch.manual_seed(0)
    a = torch.randn(3, channels, 4, 5)
    torch.testing.assert_close(KernelAveragePool(k)(a), _channel_mean_by_loops(a, k))


@pytest.mark.parametrize("channels", [16, 32, 12])
def test_topographic_kap_is_the_mean_over_grid_neighbours(channels):
    torch.manual_seed(1)
    a = torch.randn(2, channels, 3, 3)
    rows, cols = channel_grid(channels)
    assert rows * cols == channels and rows <= cols
    torch.testing.assert_close(KernelAveragePool(3, topographic=True)(a), _grid_mean_by_loops(a, 3, rows, cols))


def test_channel_grid_is_as_square_as_the_channel_count_allows():
    assert channel_grid(16) == (4, 4)
    assert channel_grid(32) == (4, 8)
    assert channel_grid(128) == (8, 16)
    assert channel_grid(7) == (1, 7)


def test_kap_rejects_even_kernels():
    with pytest.raises(ValueError):
        KernelAveragePool(2)


def test_kap_gradient_is_the_transposed_mean():
    """The layer is linear: its input gradient for an upstream gradient g is the loop mean's adjoint."""
    a = torch.randn(2, 6, 2, 2, requires_grad=True)
    g = torch.randn(2, 6, 2, 2)
    (grad,) = torch.autograd.grad((KernelAveragePool(3)(a) * g).sum(), a)
    b = a.detach().requires_grad_()
    (expected,) = torch.autograd.grad((_channel_mean_by_loops(b, 3) * g).sum(), b)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("task", [SMALL, CIFAR])
@pytest.mark.parametrize("plugin", [KAP(), KAP2D()])
def test_plugin_puts_one_kap_after_every_conv_of_the_baseline(task, plugin):
    network = plugin.build(task)
    layers = list(network)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in make_cnn(task))
    for i in convs:
        assert isinstance(layers[i + 1], KernelAveragePool)
        assert layers[i + 1].topographic == plugin.topographic
    # removing the KAP layers leaves exactly the baseline's layer sequence
    assert [type(m) for m in layers if not isinstance(m, KernelAveragePool)] == [type(m) for m in make_cnn(task)]
    assert network(torch.rand(2, *task.input_shape)).shape == (2, 10)


@pytest.mark.parametrize("task", [SMALL, CIFAR])
def test_recipe_trains_on_gaussian_noise(task):
    config = KAP().train_config(task)
    assert config.noise_sigma == (0.3 if task.is_small_grayscale else 0.1)
