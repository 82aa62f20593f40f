"""baseline-adv: every training step feeds the network points of the eps-ball around its clean batch (not the clean
batch), the attack leaves batch-norm statistics alone and raises the loss, eps is the dataset's, and on a small
synthetic problem a briefly adversarially trained linear model withstands PGD far better than a plainly trained one."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.attacks import PGD
from benchmark.data.builtin import BUILTINS
from benchmark.errors import BenchmarkError
from benchmark.layers.cnn import make_cnn
from benchmark.models.baseline import cnn_recipe
from benchmark.models.baseline_adv import BaselineAdv, dataset_eps, pgd_examples
from benchmark.plugin import ModelPlugin, Task, TrainConfig
from benchmark.predictive import Predictor
from benchmark.registry import get_plugin_class
from benchmark.training import train

SMALL = Task("mnist", (1, 28, 28), 10, n_train=8, eps_linf=0.1)
COLOUR = Task("cifar10", (3, 12, 12), 10, n_train=8, eps_linf=8 / 255)  # the VGG-style net (batch norm), small

pytestmark = pytest.mark.usefixtures("seeded", "one_thread")  # tests/conftest.py: small nets, small batches


@pytest.mark.parametrize("task", [SMALL, COLOUR])
def test_every_training_step_sees_points_of_the_eps_ball_of_its_clean_batch(task):
    """A spy on the network's inputs: the step's own forward (no input gradient) gets, for each row, a point within
    eps of one clean training image, and not that image; the attack's forwards come before it in each step."""
    plugin = BaselineAdv()
    network = plugin.build(task)
    fed = []
    network.register_forward_pre_hook(lambda module, args: fed.append(args[0].detach().clone())
                                      if module.training and not args[0].requires_grad else None)
    x, y = torch.rand(8, *task.input_shape), torch.randint(0, 10, (8,))
    config = replace(plugin.train_config(task), epochs=1, min_steps=0, batch_size=4)
    train(plugin, network, x, y, task, config, torch.device("cpu"), seed=0)
    assert len(fed) == 2  # two steps, one training forward each
    for batch in fed:
        distance = (batch[:, None] - x[None]).abs().flatten(2).amax(-1)  # [fed row, clean image], L-inf
        nearest = distance.min(1).values
        assert (nearest <= task.eps_linf + 1e-6).all()
        assert (nearest > task.eps_linf / 2).all()  # moved, most of the way to the ball's surface
        assert batch.min() >= 0 and batch.max() <= 1


def test_the_attack_leaves_batch_norm_statistics_alone_and_raises_the_loss():
    network = BaselineAdv().build(COLOUR).train()
    assert any(isinstance(m, nn.BatchNorm2d) for m in network)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x, y = torch.rand(16, *COLOUR.input_shape), torch.randint(0, 10, (16,))
    x_adv = pgd_examples(network, x, y, 8 / 255, steps=3, step_size=2.5 * (8 / 255) / 3)
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in network.parameters())
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    small = make_cnn(SMALL).train()
    xs, ys = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    with torch.no_grad():
        clean = F.cross_entropy(small(xs), ys)
    adv = pgd_examples(small, xs, ys, 0.3, steps=5, step_size=2.5 * 0.3 / 5)
    with torch.no_grad():
        assert F.cross_entropy(small(adv), ys) > clean


@pytest.mark.parametrize("profile, steps", [("quick", 3), ("standard", 7)])
def test_recipe_is_the_baselines_with_pgd_at_the_dataset_eps(profile, steps):
    for task in (SMALL, COLOUR):
        task = replace(task, profile=profile)
        config = BaselineAdv().train_config(task)
        assert replace(config, extra={}) == cnn_recipe(task)
        assert config.extra["train_eps"] == task.eps_linf and config.extra["pgd_steps"] == steps
    assert get_plugin_class("baseline-adv") is BaselineAdv and BaselineAdv.predictive == "deterministic"
    assert [type(m) for m in BaselineAdv().build(COLOUR)] == [type(m) for m in make_cnn(COLOUR)]


def test_eps_is_the_harness_dataset_eps():
    assert dataset_eps(Task("anything", (1, 28, 28), 10, 8, eps_linf=0.07)) == 0.07
    # a hand-made task without it: the built-in table the harness loads the dataset with
    assert dataset_eps(Task("mnist-5k", (1, 28, 28), 10, 8)) == BUILTINS["mnist"].eps_linf == 0.3
    assert dataset_eps(Task("cifar10", (3, 32, 32), 10, 8)) == BUILTINS["cifar10"].eps_linf
    with pytest.raises(BenchmarkError, match="eps"):
        dataset_eps(Task("my-data", (1, 28, 28), 10, 8))


def _synthetic(n: int, generator: torch.Generator):
    """Two classes on 6x6 images: pixel 0 is a robust feature (class means 0.2 / 0.8), the 35 others weak ones
    (means 0.4 / 0.6): together predictive, each moved past the other class's mean by eps = 0.15."""
    y = torch.randint(0, 2, (n,), generator=generator)
    sign = (2 * y - 1).float()[:, None]
    x = 0.5 + 0.1 * sign + 0.1 * torch.randn(n, 36, generator=generator)
    x[:, :1] = 0.5 + 0.3 * sign + 0.1 * torch.randn(n, 1, generator=generator)
    return x.clamp(0, 1).view(n, 1, 6, 6), y


class _Linear:
    def build(self, task):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(36, 2))


class _AdvLinear(_Linear, BaselineAdv):
    pass


class _PlainLinear(_Linear, ModelPlugin):
    name = "plain-linear"


def test_adversarial_training_makes_a_linear_model_robust_to_pgd():
    generator = torch.Generator().manual_seed(0)
    (x, y), (x_test, y_test) = _synthetic(512, generator), _synthetic(256, generator)
    task = Task("synthetic", (1, 6, 6), 2, 512, eps_linf=0.15)
    robust = {}
    for plugin in (_PlainLinear(), _AdvLinear()):
        network = plugin.build(task)
        train(plugin, network, x, y, task, TrainConfig(epochs=10, batch_size=64, lr=0.05), torch.device("cpu"), 0)
        predictor = Predictor(network, "deterministic")
        x_adv = PGD(steps=20)(predictor, x_test, y_test, 0.15, 1)
        with torch.no_grad():
            assert (network(x_test).argmax(1) == y_test).float().mean() > 0.95  # both learn the task
            robust[type(plugin)] = (network(x_adv).argmax(1) == y_test).float().mean().item()
    assert robust[_AdvLinear] > 0.85 and robust[_PlainLinear] < 0.7, robust  # seen: 0.95 and 0.46
