"""A small, fixed feature extractor for metric tests (registered as plugin "tiny")."""

import torch
from torch import nn

from ganzoo import FeatureExtractor, hookimpl


class TinyExtractor(FeatureExtractor):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 24, 4, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) * 0.2)
            self.conv.bias.zero_()
        self.num_features = 24 + 3
        self.protocol = {"extractor": "tiny", "weights_sha256": "fixed-seed-0", "input_size": "native",
                         "resize": "none"}

    def forward(self, images):
        x = images.float() / 127.5 - 1
        texture = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return torch.cat([texture, x.mean(dim=(2, 3))], dim=1)


@hookimpl
def register_feature_extractors(register):
    register("tiny", lambda options: TinyExtractor())
