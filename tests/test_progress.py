"""Progress that moves with the work: an attack's batch takes hundreds of network passes, and they are counted."""

import torch
from torch import nn

from benchmark.attacks.pgd import PGD
from benchmark.predictive import Predictor
from benchmark.progress import PassesColumn, counting_passes, progress_bar


class CountingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x.flatten(1))


def test_every_network_pass_inside_a_condition_moves_its_count():
    torch.manual_seed(0)
    network = CountingNet()
    predictor = Predictor(network, "deterministic")
    x = torch.rand(5, 1, 2, 2)
    y = network(x).argmax(1)  # every example classified right: at eps 1e-4 PGD takes all its steps on each
    network.calls = 0
    with progress_bar() as bar:
        job = bar.add_task("pgd-0.3", total=5)
        with counting_passes(bar, job):
            PGD(steps=7, restarts=1)(predictor, x, y, 1e-4, 1)
        passes = bar.tasks[0].fields["passes"]
        assert passes == network.calls >= 7
        assert PassesColumn().render(bar.tasks[0]).plain == f"{passes:,} passes"
        predictor.probs(x, 1)  # outside the block: not counted
        assert bar.tasks[0].fields["passes"] == passes
