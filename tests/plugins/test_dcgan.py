import pytest
import torch
from torch import nn

from ganzoo import ArchitectureSpec, GanzooError
from ganzoo_dcgan import DCGANOptions

from conftest import dcgan


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256])
def test_shapes_and_range(size):
    spec = ArchitectureSpec(image_size=size, latent_dim=8, width=4, aux_outputs={"features": 3})
    generator, critic = dcgan(spec)
    images = generator(torch.randn(2, 8))
    assert images.shape == (2, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    out = critic(images)
    assert out.score.shape == (2,)
    assert out.aux["features"].shape == (2, 3)


def test_no_batch_norm_in_critic_when_loss_forbids_it():
    spec = ArchitectureSpec(image_size=32, latent_dim=8, width=4, critic_batchnorm=False)
    _, critic = dcgan(spec)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    _, critic_with_bn = dcgan(ArchitectureSpec(image_size=32, latent_dim=8, width=4))
    assert any(isinstance(m, nn.BatchNorm2d) for m in critic_with_bn.modules())
    with pytest.raises(GanzooError, match="critic_norm"):
        dcgan(spec, critic_norm="batch")


def test_conditions_change_both_networks():
    spec = ArchitectureSpec(image_size=32, latent_dim=8, width=4, condition_dim=2)
    generator, critic = dcgan(spec)
    generator.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    images = generator(z, c)
    assert not torch.allclose(images[0], images[1])
    x = images[:1].repeat(2, 1, 1, 1).detach()
    scores = critic(x, c).score
    assert scores[0] != scores[1]


def test_declared_sizes_and_bad_options():
    from ganzoo.registry.loading import get_registry

    architecture = get_registry().create("architecture", "dcgan")
    assert tuple(architecture.image_sizes) == (16, 32, 64, 128, 256) and architecture.conditional
    with pytest.raises(GanzooError, match="options.dcgan.condition_input"):
        get_registry().create("architecture", "dcgan", {"condition_input": "add"})
    with pytest.raises(GanzooError, match="options.dcgan.width: architecture .dcgan. .plugin .dcgan.. has no such option"):
        get_registry().create("architecture", "dcgan", {"width": 16})  # the width is model.width, in the spec
    assert DCGANOptions().critic_norm == "auto"
