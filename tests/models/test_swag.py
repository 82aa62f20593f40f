"""SWAG: the sampling rule against its covariance, the moment collection, batch-norm recomputation,
and the deployed samples."""

import math

import pytest
import torch
from torch import nn

from benchmark.checkpoints import load_checkpoint, save_checkpoint
from benchmark.models.swag import SWAG, SWAGNetwork, swag_sample
from benchmark.plugin import Task, TrainConfig

MNIST = Task(dataset="mnist", input_shape=(1, 28, 28), num_classes=10, n_train=64)


pytestmark = pytest.mark.usefixtures("seeded")  # tests/conftest.py


def test_samples_have_half_diagonal_plus_half_low_rank_covariance():
    p, k, draws = 6, 4, 200_000
    mean = torch.randn(p, dtype=torch.float64)
    var = 0.1 + torch.rand(p, dtype=torch.float64)
    deviations = torch.randn(k, p, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    samples = swag_sample(mean, mean**2 + var, deviations, generator, shape=(draws,))
    expected = 0.5 * torch.diag(var) + 0.5 * deviations.T @ deviations / (k - 1)
    torch.testing.assert_close(samples.mean(0), mean, rtol=0, atol=5 * math.sqrt(expected.diagonal().max() / draws))
    # sample covariance entries have standard error ≈ sqrt((Σ_ii Σ_jj + Σ_ij²)/n): 5 of them
    se = ((expected.diagonal()[:, None] * expected.diagonal()[None, :] + expected**2) / draws).sqrt()
    assert ((samples.T.cov() - expected).abs() <= 5 * se).all()


def _tiny(rank=3, samples=2):
    base = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    return SWAGNetwork(base, rank=rank, samples=samples)


def test_collection_keeps_running_moments_and_the_last_k_deviations():
    net = _tiny(rank=3)
    thetas = [torch.randn(net.swa_mean.numel()) for _ in range(5)]
    running = []
    for i, theta in enumerate(thetas):
        net.load_flat(theta)
        net.collect()
        running.append(torch.stack(thetas[: i + 1]).mean(0))
    stacked = torch.stack(thetas)
    torch.testing.assert_close(net.swa_mean, stacked.mean(0))
    torch.testing.assert_close(net.swa_sq_mean, stacked.pow(2).mean(0))
    assert int(net.swa_count) == 5
    # rows are θ_i − θ̄_i for the last K = 3 collections (i = 2, 3, 4), in circular order
    expected = {tuple((thetas[i] - running[i]).tolist()) for i in (2, 3, 4)}
    got = {tuple(row.tolist()) for row in net.deviations()}
    assert len(got) == 3
    for row in net.deviations():
        assert any(torch.allclose(row, torch.tensor(e)) for e in expected)


def test_batch_norm_statistics_are_recomputed_for_the_current_weights():
    net = _tiny()
    x = torch.randn(49, 3)
    net.recompute_batch_norm(x, batch_size=7)  # seven equal batches: the average of their means is the mean
    pre = net.base[0](x).detach()
    bn = net.base[1]
    torch.testing.assert_close(bn.running_mean, pre.mean(0), rtol=1e-5, atol=1e-6)
    # the cumulative average of per-batch unbiased variances, approximately the data's variance
    torch.testing.assert_close(bn.running_var, pre.var(0), rtol=0.15, atol=1e-4)


def test_deployed_samples_are_the_stored_weights_with_their_own_statistics():
    net = _tiny(samples=3)
    x = torch.randn(40, 3)
    for _ in range(4):  # some spread to collect
        net.load_flat(net.flat_params() + 0.3 * torch.randn(net.swa_mean.numel()))
        net.collect()
    net.fit_samples(x, batch_size=40, generator=torch.Generator().manual_seed(0))
    assert bool(net.fitted)
    torch.testing.assert_close(net.flat_params(), net.swa_mean)  # the base ends at the SWA mean
    net.eval()
    out = net(x[:5])
    assert out.shape == (3, 5, 2)
    assert not torch.allclose(out[0], out[1])
    # rebuild sample 1 by hand: its weights, then batch norm recomputed on the same data
    check = _tiny()
    check.load_flat(net.sample_params[1])
    check.recompute_batch_norm(x, batch_size=40)
    torch.testing.assert_close(out[1], check.base.eval()(x[:5]))


def test_finalize_collects_and_deploys_samples_that_survive_a_checkpoint_round_trip(tmp_path):
    plugin = SWAG()
    net = plugin.build(MNIST)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    x, y = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8), torch.arange(64) % 10
    config = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.05, weight_decay=5e-4,
                         extra={"swa_lr": 0.01, "swa_epochs": 1, "collections_per_epoch": 4, "bn_images": 64})
    plugin.finalize(net, x, y, MNIST, config, torch.device("cpu"), seed=0)
    assert int(net.swa_count) == 4 and bool(net.fitted)
    net.eval()
    xb = torch.rand(2, 1, 28, 28)
    out = net(xb)
    assert out.shape == (5, 2, 10) and torch.isfinite(out).all()
    save_checkpoint(net, tmp_path / "swag.safetensors", {})  # safetensors: no tensor may share memory
    fresh = plugin.build(MNIST)
    load_checkpoint(fresh, tmp_path / "swag.safetensors")
    torch.testing.assert_close(fresh.eval()(xb), out)
    torch.testing.assert_close(plugin.surrogate(fresh)(xb), net.base(xb))
