"""ibp-bnn: bounds of one posterior draw are sound, certified points survive random, corner and PGD points
on the same weights, the deployed network draws from the law certification bounds (one weight draw per
row), the robust likelihood by hand, the eps warm-up, and the certify condition end to end."""

import copy

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fakes import ball_samples
from torch import nn

from benchmark.attacks import PGD
from benchmark.bounds import certified, input_box, propagate
from benchmark.layers.variational import LocalReparameterization, MeanFieldConv2d, kl_divergence
from benchmark.models.ibp_bnn import IBPBNN, robust_nll
from benchmark.plugin import Task, TrainConfig
from benchmark.predictive import Predictor
from benchmark.randomness import row_correlation
from benchmark.registry import get_plugin_class
from benchmark.training import train

MNIST = Task("mnist", (1, 28, 28), 10, 1000, "quick")
CIFAR = Task("cifar10", (3, 32, 32), 10, 1000, "quick")
SMALL_COLOUR = Task("cifar10", (3, 12, 12), 10, 1000, "quick")  # the CIFAR architecture, small and fast


def draw_network(network: nn.Module, seed: int) -> nn.Module:
    """The deterministic network of the weight draw that ``interval_logits`` makes after
    ``torch.manual_seed(seed)``: the variational layers are sampled in the same order (layer by layer,
    weight then bias), and each replaced by an nn.Linear/nn.Conv2d holding its draw."""
    torch.manual_seed(seed)
    draws = [m.sample_weights() if isinstance(m, LocalReparameterization) else None for m in network]
    layers = []  # built after drawing: creating a layer consumes random numbers
    for module, draw in zip(network, draws, strict=True):
        if draw is not None:
            fixed = module.deterministic()
            with torch.no_grad():
                fixed.weight.copy_(draw[0])
                fixed.bias.copy_(draw[1])
            module = fixed
        layers.append(copy.deepcopy(module))
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("task", [MNIST, CIFAR])
def test_bounds_of_one_posterior_draw_contain_its_logits_over_the_ball(task):
    plugin = IBPBNN()
    torch.manual_seed(0)
    network = plugin.build(task).eval()
    for layer in network:  # a wide posterior, so the draw differs clearly from the mean
        if isinstance(layer, LocalReparameterization):
            nn.init.constant_(layer.weight_rho, -3.0)
    x = torch.rand(3, *task.input_shape, dtype=torch.float64)
    lower, upper = input_box(x, 0.03)
    torch.manual_seed(11)
    low, high = plugin.interval_logits(network, lower, upper)
    fixed = draw_network(network, 11).double()
    samples = ball_samples(x, 0.03, 100)
    with torch.no_grad():
        logits = fixed(samples.flatten(0, 1)).view(100, 3, -1)
    assert (logits >= low - 1e-9).all() and (logits <= high + 1e-9).all()
    # the bounds belong to that draw: on a point box they are its logits, and not another draw's
    torch.manual_seed(11)
    point = plugin.interval_logits(network, x, x)
    with torch.no_grad():
        torch.testing.assert_close(point[0], fixed(x))
        torch.testing.assert_close(point[1], fixed(x))
        assert not torch.allclose(point[0], draw_network(network, 12).double()(x))


def wide_posterior(network: nn.Module) -> nn.Module:
    """Weights for which the law of the logits is far from a point mass and the sharing of one kernel by
    all positions shows: wide kernels; dense layers with positive means, so the logits add up the features
    of every position and their correlation within a draw sets the logits' variance. The law of deployed
    and certified draws must agree for any weights; these make a disagreement large."""
    with torch.no_grad():
        for layer in network:
            if isinstance(layer, MeanFieldConv2d):
                layer.weight_rho.fill_(-1.0)
            elif isinstance(layer, LocalReparameterization):
                layer.weight_mu.abs_()
                layer.weight_rho.fill_(-4.0 if layer.in_features > 200 else -2.0)
    return network


def kurtosis(a: torch.Tensor) -> torch.Tensor:
    centred = a - a.mean(0)
    return centred.pow(4).mean(0) / centred.pow(2).mean(0).square()


@pytest.mark.slow
@pytest.mark.parametrize("task", [MNIST, SMALL_COLOUR])
def test_deployed_logits_follow_the_law_of_the_draws_certification_bounds(task):
    """At one input, the deployed network's logits over S rows and the logits of S draws of
    ``interval_logits`` (on a point box the bounds are the draw's logits) agree in mean and variance within
    Monte Carlo error. The input is nearly flat, so all positions see almost the same patch and one kernel
    draw moves them together; local reparameterization of the conv net draws each position's noise
    independently, and max-pooling independent noise raises the mean: z about 22 here."""
    plugin, draws = IBPBNN(), 200
    torch.manual_seed(0)
    network = wide_posterior(plugin.build(task)).eval()
    x = 0.5 + 0.05 * torch.rand(1, *task.input_shape)
    with torch.no_grad():
        deployed = network(x.expand(draws, *task.input_shape))
        bounded = torch.cat([plugin.interval_logits(network, x, x)[0] for _ in range(draws)])
    assert deployed.std(0).min() > 0.5  # draws differ by whole logits: a law worth comparing
    z = (deployed.mean(0) - bounded.mean(0)) / (deployed.var(0) / draws + bounded.var(0) / draws).sqrt()
    assert z.abs().max() < 4.5
    # the sample variance's relative sd is sqrt((kurtosis - 1) / S): the logits are far from Gaussian
    log_ratio = (deployed.var(0) / bounded.var(0)).log()
    sd = ((kurtosis(deployed) - 1 + kurtosis(bounded) - 1) / draws).sqrt()
    assert (log_ratio.abs() / sd).max() < 4.5


@pytest.mark.parametrize("task", [MNIST, SMALL_COLOUR])
def test_rows_of_a_batch_draw_independent_weights(task):
    torch.manual_seed(0)
    network = wide_posterior(IBPBNN().build(task)).eval()
    assert abs(row_correlation(network, torch.rand(1, *task.input_shape))) < 0.25


def test_only_ibp_bnn_deploys_weight_draws():
    """The other plugins on the shared layers keep local reparameterization."""
    torch.manual_seed(0)
    assert {m.sampling for m in IBPBNN().build(CIFAR).modules() if isinstance(m, LocalReparameterization)} == {
        "weights"}
    for name in ("bbb", "vd", "stf-bnn"):
        network = get_plugin_class(name)().build(CIFAR)
        assert {m.sampling for m in network.modules() if isinstance(m, LocalReparameterization)} == {"local"}


def test_training_forward_returns_the_clean_logits_of_the_draw_its_bounds_use():
    plugin = IBPBNN()
    torch.manual_seed(0)
    network = plugin.build(MNIST).train()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(5)
    clean = network(x)
    low, high = network.train_bounds
    fixed = draw_network(network, 5)
    with torch.no_grad():
        torch.testing.assert_close(clean, fixed(x), rtol=1e-5, atol=1e-5)
    assert (low <= clean + 1e-5).all() and (clean <= high + 1e-5).all()


def test_robust_likelihood_and_kl_by_hand():
    plugin = IBPBNN()
    torch.manual_seed(0)
    network = plugin.build(MNIST).train()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    out = network(x)
    low, high = network.train_bounds
    loss = plugin.loss(network, out, y, MNIST)
    worst = torch.where(F.one_hot(y, 10).bool(), low, high)
    p = 0.5 * out.softmax(-1) + 0.5 * worst.softmax(-1)
    expected = -p.gather(1, y[:, None]).log().mean() + kl_divergence(network) / MNIST.n_train
    torch.testing.assert_close(loss, expected)
    assert network.train_bounds is None  # used once, no graph left on the module
    loss.backward()
    assert all(p.grad is not None for p in network.parameters())
    # lambda = 1 is the cross-entropy; at eps = 0 the worst case is the clean logits
    logits = torch.randn(5, 10)
    labels = torch.randint(0, 10, (5,))
    torch.testing.assert_close(robust_nll(logits, logits + 3, labels, 1.0),
                               F.cross_entropy(logits, labels, reduction="none"))
    torch.testing.assert_close(robust_nll(logits, logits, labels, 0.25),
                               F.cross_entropy(logits, labels, reduction="none"))
    assert IBPBNN.mixing(CIFAR) == 0.25 and IBPBNN.mixing(MNIST) == 0.5


def test_eps_warms_up_linearly_then_holds():
    plugin = IBPBNN()
    network = plugin.build(MNIST)
    seen = []
    for progress in (0.0, 0.25, 0.5, 0.9):
        plugin.before_step(network, progress)
        seen.append(network.train_eps)
    assert seen == pytest.approx([0.0, 0.05, 0.1, 0.1])


@pytest.mark.slow
def test_a_certified_point_is_never_flipped_by_pgd_on_the_same_weights(mnist_sample):
    x_train, y_train, x_test, y_test = mnist_sample
    plugin = IBPBNN()
    torch.manual_seed(0)
    network = plugin.build(MNIST)
    train(plugin, network, x_train[:1000], y_train[:1000], MNIST, TrainConfig(epochs=4, batch_size=100, lr=2e-3),
          torch.device("cpu"), seed=0)
    eps = 0.02  # about a third of these 150 points are certified after this short training
    x, y = x_test[:150], y_test[:150]
    torch.manual_seed(3)
    with torch.no_grad():
        bounds = plugin.interval_logits(network, *input_box(x.double(), eps))
    is_certified = certified(*bounds, y)
    assert is_certified.sum() >= 10, "too few certified points for the test to mean anything"
    fixed = Predictor(draw_network(network, 3), "deterministic")
    xc, yc = x[is_certified], y[is_certified]
    x_adv = PGD(steps=40, restarts=2)(fixed, xc, yc, eps, 1)
    assert (x_adv - xc).abs().max() <= eps + 1e-6
    inside = ball_samples(xc, eps, 64)  # uniform points and corners of the ball
    with torch.no_grad():
        assert (fixed.network(x_adv).argmax(1) == yc).all()
        assert (fixed.network(xc).argmax(1) == yc).all()  # certified implies correct for that draw
        assert (fixed.network(inside.flatten(0, 1)).argmax(1).view(64, -1) == yc).all()


@pytest.mark.slow
def test_certify_condition_and_leaderboard_column_end_to_end(tmp_path):
    from benchmark.columns import EXTRA, SCHEMA
    from benchmark.runner import RunRequest, run

    # at eps 0.03 a short training certifies part of the test points (at MNIST's 0.3 nothing, and every check
    # below would hold of an all-zero array)
    row = run(RunRequest(model="ibp-bnn", dataset="mnist-5k", n_train=1000, n_test=40, epochs=2, device="cpu",
                         profile="quick", out=tmp_path, eps=0.03))
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    certify = metrics[metrics.condition == "certify"]
    assert sorted(certify.param.unique()) == pytest.approx([0.01, 0.02, 0.03])  # the sweep without the large eps
    acc = certify[certify.metric == "certified_acc"].set_index("param").value
    pairs = certify[certify.metric == "certified_pair_fraction"].set_index("param").value
    assert (acc <= pairs + 1e-12).all() and acc.is_monotonic_decreasing  # all-S implies each pair; nested balls
    assert acc.iloc[0] > 0.2 and acc.iloc[0] > acc.iloc[-1]
    assert (certify[certify.metric == "samples"].value == 8).all()
    import numpy as np

    certified_draws = np.load(run_dir / "conditions" / "certify-0.01.npz")["certified"]
    assert certified_draws.shape == (8, 40) and certified_draws.all(0).sum() >= 8
    clean_correct = np.load(run_dir / "conditions" / "clean.npz")["correct"][0]
    assert not (certified_draws.all(0) & ~clean_correct).any()  # certified for all draws implies correct
    board = pd.read_csv(tmp_path / "leaderboards" / "mnist-5k.csv")
    assert list(board.columns) == SCHEMA + EXTRA and "certified_acc" in EXTRA
    assert (board.certified_acc.iloc[0] == pytest.approx(row["certified_acc"])
            == pytest.approx(acc[np.isclose(acc.index, 0.03)].iloc[0]))
    (report,) = (tmp_path / "leaderboards" / "reports" / "mnist-5k").glob("*/ibp-bnn/report.md")
    assert "Certified robustness" in report.read_text()


def test_certify_runs_only_for_plugins_with_bounds_and_checks_them():
    from benchmark.certification import _checked_bounds
    from benchmark.errors import PluginOutputError
    from benchmark.evaluation import Condition, Evaluator
    from benchmark.profiles import get_profile

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    args = (Predictor(net, "deterministic"), x, y, get_profile("quick"), 0.3, torch.device("cpu"), 0)
    assert not any(c.name == "certify" for c in Evaluator(*args).plan())
    exact = Evaluator(*args, bounds=lambda lower, upper: propagate(net.double(), lower, upper))
    assert [c.param for c in exact.plan() if c.name == "certify"] == pytest.approx([0.1, 0.2, 0.3])
    rows, arrays = exact.run(Condition("certify", 0.0))  # a point box: certified exactly where correct
    with torch.no_grad():
        assert arrays["certified"][0].tolist() == (net(x.double()).argmax(1) == y).tolist()
    lying = Evaluator(*args, bounds=lambda lo, up: (torch.ones(len(lo), 10), torch.zeros(len(lo), 10)))
    with pytest.raises(PluginOutputError):
        _checked_bounds(lying, x.double(), x.double())
