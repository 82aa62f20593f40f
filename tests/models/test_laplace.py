"""Last-layer Laplace: the network's own probit predictive against laplace-torch's, and the plugin."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmark.checkpoints import load_checkpoint, save_checkpoint
from benchmark.models.laplace_approx import LaplacePlugin, LastLayerLaplace, fit_last_layer_laplace
from benchmark.plugin import Task

MNIST = Task(dataset="mnist", input_shape=(1, 28, 28), num_classes=10, n_train=96)


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def _trained_tiny_problem():
    """Three Gaussian blobs in 2D, a small MLP trained briefly (MAP, with a little weight decay)."""
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = torch.arange(150) % 3
    x = centres[y] + 0.8 * torch.randn(150, 2)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(200):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, x, y


def test_probit_predictive_matches_laplace_torch():
    net, x, y = _trained_tiny_problem()
    network = LastLayerLaplace(net)
    la = fit_last_layer_laplace(network, DataLoader(TensorDataset(x, y), batch_size=32))
    test = 3 * torch.randn(40, 2)  # also far from the data, where the variance is large
    with torch.no_grad():
        ours = network.eval()(test).softmax(-1)
        theirs = la(test, pred_type="glm", link_approx="probit")
        map_probs = net(test).softmax(-1)
    torch.testing.assert_close(ours, theirs.to(ours), rtol=1e-4, atol=1e-5)
    assert (ours - map_probs).abs().max() > 1e-2  # the posterior variance changes the prediction
    assert network.prior_precision.item() > 0 and network.prior_precision.item() != 1.0  # marglik moved it


def test_class_variances_equal_the_jacobian_sandwich():
    network = LastLayerLaplace(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)))
    n = 5 * 3 + 3
    a = torch.randn(n, n)
    network.posterior_cov.copy_(a @ a.T / n)
    phi = torch.randn(7, 5)
    # laplace-torch's last-layer Jacobian: [φᵀ ⊗ I_C, I_C], weight entries ordered class-major
    jac = torch.cat([torch.einsum("bh,cd->bcdh", phi, torch.eye(3)).reshape(7, 3, 15), torch.eye(3).expand(7, 3, 3)],
                    -1)
    expected = torch.einsum("bcp,pq,bcq->bc", jac, network.posterior_cov, jac)
    torch.testing.assert_close(network.class_variances(phi), expected, rtol=1e-4, atol=1e-5)


def test_zero_covariance_gives_the_map_logits():
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(6, 4)
    torch.testing.assert_close(LastLayerLaplace(net)(x), net(x))


def test_plugin_finalize_fills_the_buffers_and_the_checkpoint_carries_them(tmp_path):
    plugin = LaplacePlugin()
    network = plugin.build(MNIST)
    x, y = torch.randint(0, 256, (96, 1, 28, 28), dtype=torch.uint8), torch.arange(96) % 10
    network.train()
    plugin.finalize(network, x, y, MNIST, plugin.train_config(MNIST), torch.device("cpu"), seed=0)
    assert network.training  # finalize restores the mode it was given
    assert network.posterior_cov.abs().sum() > 0
    network.eval()
    xb = torch.rand(3, 1, 28, 28, requires_grad=True)
    out = network(xb)
    assert out.shape == (3, 10)
    grad = torch.autograd.grad(out.sum(), xb)[0]
    assert torch.isfinite(grad).all()
    save_checkpoint(network, tmp_path / "laplace.safetensors", {})
    fresh = plugin.build(MNIST).eval()
    load_checkpoint(fresh, tmp_path / "laplace.safetensors")
    torch.testing.assert_close(fresh(xb), out)
    torch.testing.assert_close(plugin.surrogate(fresh)(xb), network.net(xb))
