"""Noise drawn in the activations' own layout: the same law in either layout, and unchanged draws where the
activations are contiguous (so a network evaluated in the default layout draws what it drew before)."""

import torch

from benchmark.layers.noise import standard_normal_like


def test_channels_last_activations_get_channels_last_standard_normal_noise():
    like = torch.empty(64, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    noise = standard_normal_like(like)
    assert noise.shape == like.shape and noise.stride() == like.stride()
    assert abs(noise.mean().item()) < 0.01 and abs(noise.std().item() - 1) < 0.01
    per_channel = noise.mean(dim=(0, 2, 3))  # every channel gets its own draws, none repeated across positions
    assert per_channel.abs().max() < 0.05 and noise[:, 0].flatten().unique().numel() == noise[:, 0].numel()


def test_contiguous_activations_draw_exactly_what_randn_like_draws():
    for like in (torch.empty(5, 3, 4, 4), torch.empty(7, 10)):
        torch.manual_seed(1)
        expected = torch.randn_like(like)
        torch.manual_seed(1)
        assert torch.equal(standard_normal_like(like), expected)
