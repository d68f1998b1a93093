"""A batch-norm-free test architecture and the per-rank entry point for the DDP equivalence test.

Batch norm computes statistics per rank on CPU (SyncBatchNorm needs CUDA), so only a network without it can
match a single process bit for bit; this one is that network, registered as the plugin ``tinynet``.
"""

import os
import sys

import torch
from torch import nn

from ganzoo import Architecture, ArchitectureSpec, Critic, CriticOutput, Generator, hookimpl


class TinyGenerator(Generator):
    def __init__(self, spec: ArchitectureSpec):
        super().__init__()
        self.latent_dim, self.size = spec.latent_dim, spec.image_size
        self.net = nn.Linear(spec.latent_dim + spec.condition_dim, 3 * spec.image_size ** 2)

    def forward(self, z, c=None):
        x = z if c is None else torch.cat([z, c], dim=1)
        return torch.tanh(self.net(x)).view(-1, 3, self.size, self.size)


class TinyCritic(Critic):
    def __init__(self, spec: ArchitectureSpec):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.score = nn.Linear(4 * (spec.image_size // 2) ** 2, 1)

    def forward(self, x, c=None):
        return CriticOutput(self.score(self.features(x)).squeeze(1))


class TinyNet(Architecture):
    image_sizes = range(8, 129)
    conditional = False
    extra_outputs = False

    def build(self, spec):
        return TinyGenerator(spec), TinyCritic(spec)


@hookimpl
def register_architectures(register):
    register("tinynet", lambda options: TinyNet())


def run_rank(rank: int, world_size: int, port: int, config_json: str, run_dir: str) -> None:
    """One torchrun-like rank: the environment torchrun would set, then ganzoo's own training."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from ganzoo.runtime import context
    from ganzoo.runtime.config import TrainConfig
    from ganzoo.registry.loading import load_plugins
    from ganzoo.engine.training import run_training

    run_training(TrainConfig.model_validate_json(config_json), run_dir,
          registry=load_plugins({"tinynet": sys.modules[__name__]}), progress=False)
    context.teardown()
