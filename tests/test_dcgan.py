import pytest
import torch
from torch import nn

from ganzoo import ArchitectureSpec, GanzooError
from ganzoo_dcgan import build_dcgan


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_range(size):
    spec = ArchitectureSpec(image_size=size, latent_dim=8, aux_outputs={"features": 3})
    generator, critic = build_dcgan(spec, {"width": 4})
    images = generator(torch.randn(2, 8))
    assert images.shape == (2, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    out = critic(images)
    assert out.score.shape == (2,)
    assert out.aux["features"].shape == (2, 3)


def test_no_batch_norm_in_critic_when_loss_forbids_it():
    spec = ArchitectureSpec(image_size=32, latent_dim=8, critic_batchnorm=False)
    _, critic = build_dcgan(spec, {"width": 4})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    _, critic_with_bn = build_dcgan(ArchitectureSpec(image_size=32, latent_dim=8), {"width": 4})
    assert any(isinstance(m, nn.BatchNorm2d) for m in critic_with_bn.modules())
    with pytest.raises(GanzooError, match="critic_norm"):
        build_dcgan(spec, {"width": 4, "critic_norm": "batch"})


def test_conditions_change_both_networks():
    spec = ArchitectureSpec(image_size=32, latent_dim=8, condition_dim=2)
    generator, critic = build_dcgan(spec, {"width": 4})
    generator.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    images = generator(z, c)
    assert not torch.allclose(images[0], images[1])
    x = images[:1].repeat(2, 1, 1, 1).detach()
    scores = critic(x, c).score
    assert scores[0] != scores[1]


def test_unsupported_size_and_bad_options():
    with pytest.raises(GanzooError, match="supports image sizes"):
        build_dcgan(ArchitectureSpec(image_size=48, latent_dim=8), {})
    with pytest.raises(GanzooError, match="options.dcgan.width"):
        build_dcgan(ArchitectureSpec(image_size=32, latent_dim=8), {"width": 0})
