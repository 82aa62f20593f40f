"""Cross-checks of the harness's attacks against independent implementations.

On the same trained MLP and the same MNIST test images, the harness's FGSM, PGD, AutoAttack and Square
must be at least as strong as torchattacks', Foolbox's and pyautoattack's (robust accuracy no more than one
point higher), and on a randomized toy defence (Gaussian input noise) its EOT-PGD must be at least as
strong as pyautoattack's own ``rand`` version when both are judged by the same deployed rule.

Robust accuracy of a deterministic model is the fraction of examples with argmax(model(x_adv)) == y.
"""

import numpy as np
import pytest
import torch
from fakes import assert_in_threat_model
from torch import nn

from benchmark.attacks import FGSM, PGD, AutoAttack, Square
from benchmark.predictive import Predictor

EPS = 0.08  # MNIST MLP: clean ~92%, PGD-20 leaves ~30%, so the comparison is informative
TOL = 0.01  # one point of robust accuracy
PGD_STEPS = 20
PGD_STEP_SIZE = 2.5  # harness units: eps / steps (Madry et al.)


def robust_accuracy(net, x_adv, y):
    with torch.no_grad():
        return (net(x_adv).argmax(1) == y).float().mean().item()


def fraction_identical(a, b, atol=1e-6):
    return ((a - b).flatten(1).abs().max(1).values <= atol).float().mean().item()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def test_points(mnist_sample):
    _, _, x, y = mnist_sample
    return x[:300], y[:300]


# ----------------------------------------------------------------------------------------------------
# PGD


def pgd_accuracies(net, x, y):
    """Robust accuracy under the harness's PGD, torchattacks.PGD and foolbox LinfPGD, same settings.

    All three get the same seed, so they draw the same uniform random start (the harness and torchattacks
    both use ``torch.empty_like(x).uniform_(-eps, eps)``); any gap then comes from the algorithms.
    """
    import foolbox as fb
    import torchattacks

    alpha = PGD_STEP_SIZE * EPS / PGD_STEPS
    torch.manual_seed(0)
    harness = PGD(steps=PGD_STEPS, step_size=PGD_STEP_SIZE, random_start=True)(
        Predictor(net, "deterministic"), x, y, EPS, 1)
    torch.manual_seed(0)
    ta = torchattacks.PGD(net, eps=EPS, alpha=alpha, steps=PGD_STEPS, random_start=True)(x, y)
    torch.manual_seed(0)
    _, fb_adv, _ = fb.attacks.LinfPGD(steps=PGD_STEPS, rel_stepsize=PGD_STEP_SIZE / PGD_STEPS, random_start=True)(
        fb.PyTorchModel(net, bounds=(0, 1)), x, y, epsilons=EPS)
    for x_adv in (harness, ta, fb_adv):
        assert_in_threat_model(x_adv, x, EPS)
    return {"clean": robust_accuracy(net, x, y), "harness": robust_accuracy(net, harness, y),
            "torchattacks": robust_accuracy(net, ta, y), "foolbox": robust_accuracy(net, fb_adv, y)}


def test_pgd_is_at_least_as_strong_as_torchattacks_and_foolbox(trained_mlp, test_points):
    x, y = test_points
    acc = pgd_accuracies(trained_mlp, x, y)
    references = {k: acc[k] for k in ("torchattacks", "foolbox")}
    # precondition: eps leaves the model partially robust, so the accuracies can actually differ
    assert acc["clean"] > 0.85, acc
    assert 0.1 < min(references.values()) and max(references.values()) < 0.8, acc
    for name, ref in references.items():
        assert acc["harness"] <= ref + TOL, f"harness PGD weaker than {name}: {acc}"
    assert acc["harness"] <= min(references.values()) + TOL, acc


# ----------------------------------------------------------------------------------------------------
# FGSM


def fgsm_results(net, x, y):
    import foolbox as fb
    import torchattacks

    harness = FGSM()(Predictor(net, "deterministic"), x, y, EPS, 1)
    ta = torchattacks.FGSM(net, eps=EPS)(x, y)
    _, fb_adv, _ = fb.attacks.LinfFastGradientAttack(random_start=False)(
        fb.PyTorchModel(net, bounds=(0, 1)), x, y, epsilons=EPS)
    return {"harness": harness, "torchattacks": ta, "foolbox": fb_adv}


def test_fgsm_agrees_with_torchattacks_and_foolbox(trained_mlp, test_points):
    """FGSM is deterministic: same accuracy and (almost always) the very same adversarial images.

    The three differ only in how the input gradient is computed: the harness takes the sum of
    ``nll_loss(log_softmax)``, torchattacks the batch *mean* of ``cross_entropy``, Foolbox the sum of its
    own cross-entropy. The sign is the same except for components whose gradient is zero or within float
    rounding of zero (sign(0) = 0 in all three, but rounding can turn a ~1e-9 component into +0 or -0 or
    flip it), and such a pixel then moves by eps one way or the other. Clipping to [0, 1] is identical.
    That is why agreement is asked for on at least 95% of the images rather than on all of them.
    """
    x, y = test_points
    adv = fgsm_results(trained_mlp, x, y)
    for x_adv in adv.values():
        assert_in_threat_model(x_adv, x, EPS)
    acc = {name: robust_accuracy(trained_mlp, x_adv, y) for name, x_adv in adv.items()}
    assert 0.1 < acc["harness"] < 0.8, acc
    for name in ("torchattacks", "foolbox"):
        assert abs(acc["harness"] - acc[name]) <= TOL, acc
        assert fraction_identical(adv["harness"], adv[name]) >= 0.95, name


# ----------------------------------------------------------------------------------------------------
# AutoAttack (standard version), deterministic model


def autoattack_accuracies(net, x, y):
    import logging

    from pyautoattack import AutoAttack as PyAutoAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    predictor = Predictor(net, "deterministic")
    harness = AutoAttack(seed=0)(predictor, x, y, EPS, 1)
    aa = PyAutoAttack(net, norm="Linf", eps=EPS, version="standard", seed=0, device="cpu")
    aa.verbose = False
    direct, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
    assert_in_threat_model(harness, x, EPS)
    assert_in_threat_model(direct, x, EPS)
    return {"clean": robust_accuracy(net, x, y), "harness": robust_accuracy(net, harness, y),
            "pyautoattack": robust_accuracy(net, direct, y)}


@pytest.mark.slow
def test_autoattack_is_at_least_as_strong_as_pyautoattacks_standard_version(trained_mlp, test_points):
    """The harness's own engine against pyautoattack's standard version on the bare net, same points and eps."""
    x, y = test_points
    x, y = x[:100], y[:100]
    acc = autoattack_accuracies(trained_mlp, x, y)
    assert 0.1 < acc["pyautoattack"] < 0.8, acc
    assert acc["harness"] <= acc["pyautoattack"] + TOL, acc


def test_autoattack_stages_have_the_standard_versions_budgets(trained_mlp):
    """Stage for stage, the harness's standard version spends what pyautoattack's does: steps, restarts,
    target classes and queries, read from pyautoattack's own standard configuration."""
    from pyautoattack import AutoAttack as PyAutoAttack

    aa = PyAutoAttack(trained_mlp, norm="Linf", eps=EPS, version="standard", seed=0, device="cpu")
    predictor = Predictor(trained_mlp, "deterministic", num_classes=10)
    harness = AutoAttack(seed=0)
    assert harness.stages(predictor, 10) == aa.attacks_to_run
    ce, targeted, fab, square = (harness.stage_attack(stage, 10) for stage in aa.attacks_to_run)
    assert (ce.loss, ce.steps, ce.restarts) == (aa.apgd.loss, aa.apgd.n_iter, aa.apgd.n_restarts)
    assert (targeted.loss, targeted.steps, targeted.restarts, targeted.targets) == (
        "dlr-targeted", aa.apgd_targeted.n_iter, aa.apgd_targeted.n_restarts, aa.apgd_targeted.n_target_classes)
    assert (fab.steps, fab.restarts, fab.targets) == (aa.fab.n_iter, aa.fab.n_restarts, aa.fab.n_target_classes)
    assert (square.queries, square.p_init) == (aa.square.n_queries, aa.square.p_init)


# ----------------------------------------------------------------------------------------------------
# Square Attack, deterministic model: the harness's own against pyautoattack's

SQUARE_QUERIES = 300


def square_accuracies(net, x, y):
    """Same eps, p_init, budget and p schedule (rescaled to the budget). pyautoattack gets one query more per
    example (its start is not counted in ``n_queries``); it draws one window position per iteration for the
    whole batch, the harness one per example (as in the paper)."""
    import logging

    from pyautoattack.square import SquareAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    harness = Square(queries=SQUARE_QUERIES, p_init=0.8, seed=0)(Predictor(net, "deterministic"), x, y, EPS, 1)
    reference = SquareAttack(net, norm="Linf", n_queries=SQUARE_QUERIES, eps=EPS, p_init=0.8, n_restarts=1, seed=0,
                             resc_schedule=True, device="cpu")
    with torch.no_grad():
        direct = reference.perturb(x, y)
    assert_in_threat_model(harness, x, EPS)
    assert_in_threat_model(direct, x, EPS)
    return {"clean": robust_accuracy(net, x, y), "harness": robust_accuracy(net, harness, y),
            "pyautoattack": robust_accuracy(net, direct, y)}


def test_square_is_at_least_as_strong_as_pyautoattacks(trained_mlp, test_points):
    x, y = test_points
    acc = square_accuracies(trained_mlp, x, y)
    assert 0.1 < acc["pyautoattack"] < acc["clean"] - 0.1, acc  # partially robust: the counts can differ
    assert acc["harness"] <= acc["pyautoattack"] + TOL, acc


# ----------------------------------------------------------------------------------------------------
# Randomized toy defence: EOT-PGD vs pyautoattack's rand version

SIGMA = 0.3
EOT_DRAWS = 8  # K, the harness's draws per gradient
EVAL_DRAWS = 32  # S, draws of the deployed rule when judging the final points
EVAL_SEEDS = (101, 102, 103)


class GaussianInputNoise(nn.Module):
    """Randomized-smoothing-like toy: ``net(x + sigma * noise)``, fresh noise on every call (eval mode
    too), no clamping."""

    def __init__(self, net, sigma=SIGMA):
        super().__init__()
        self.net = net
        self.sigma = sigma

    def forward(self, x):
        return self.net(x + self.sigma * torch.randn_like(x))


def deployed_accuracy(predictor, x_adv, y):
    """Accuracy of argmax of the mean softmax over S fresh draws, averaged over fixed re-evaluation seeds."""
    accs = []
    for seed in EVAL_SEEDS:
        torch.manual_seed(seed)
        accs.append((predictor.probs(x_adv, EVAL_DRAWS).argmax(1) == y).float().mean().item())
    return float(np.mean(accs))


def randomized_accuracies(net, x, y):
    """The harness's EOT-PGD against pyautoattack's ``rand`` version, both judged by the deployed rule.

    pyautoattack rand runs APGD-CE then APGD-DLR (100 iterations each, one restart), averaging eot_iter = 20
    single-draw gradients per step; it is used unchanged. Budget per example, in single-draw forward and
    backward passes: pyautoattack up to 2 * (100 + 1) * 20 = 4,040; the harness (20 + 1) * 8 = 168, about
    24 times fewer, so a larger budget does not favour the harness.
    """
    import logging

    from pyautoattack import AutoAttack as PyAutoAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    toy = GaussianInputNoise(net).eval()
    predictor = Predictor(toy, "stochastic")

    torch.manual_seed(0)
    harness = PGD(steps=PGD_STEPS, step_size=PGD_STEP_SIZE, random_start=True)(predictor, x, y, EPS, EOT_DRAWS)
    torch.manual_seed(0)
    harness_autoattack = AutoAttack(seed=0)(predictor, x, y, EPS, EOT_DRAWS)

    aa = PyAutoAttack(toy, norm="Linf", eps=EPS, version="rand", seed=0, device="cpu")
    aa.verbose = False
    assert aa.attacks_to_run == ["apgd-ce", "apgd-dlr"]
    assert (aa.apgd.n_iter, aa.apgd.eot_iter, aa.apgd.n_restarts) == (100, 20, 1)
    rand, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])

    for x_adv in (harness, harness_autoattack, rand):
        assert_in_threat_model(x_adv, x, EPS)
    return {"clean": deployed_accuracy(predictor, x, y), "harness": deployed_accuracy(predictor, harness, y),
            "harness_autoattack": deployed_accuracy(predictor, harness_autoattack, y),
            "pyautoattack_rand": deployed_accuracy(predictor, rand, y)}


@pytest.mark.slow
def test_eot_pgd_is_at_least_as_strong_as_pyautoattack_rand(trained_mlp, test_points):
    x, y = test_points
    x, y = x[:100], y[:100]
    acc = randomized_accuracies(trained_mlp, x, y)
    assert acc["clean"] > 0.5, acc
    assert 0.1 < acc["pyautoattack_rand"] < acc["clean"] - 0.1, acc  # partially robust at this eps
    assert acc["harness"] <= acc["pyautoattack_rand"] + TOL, acc
    # the harness's own AutoAttack for stochastic models (APGD-CE and APGD-DLR on the K-draw average,
    # highest-loss points kept) must be at least as strong as its cheaper EOT-PGD
    assert acc["harness_autoattack"] <= acc["harness"] + TOL, acc
