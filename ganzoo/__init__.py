"""ganzoo: a plugin-based GAN zoo for album cover art.

The public API a plugin uses: ``hookimpl`` to mark hook implementations, the interfaces it implements (and the
records it receives: ``Batch``, ``CriticOutput``, ``MetricInputs``), ``GanzooError`` for one-line errors,
``AUDIO_DESCRIPTORS`` (the columns ``data prepare --audio`` computes), ``parse_options`` to validate options by
hand (components that register an ``options`` model get them validated), ``adam`` (torch's fused Adam),
``read_bytes`` (a regular file of bounded size, never through a link: how a plugin reads a weights file a user
names) and ``check_recipe`` (ganzoo's checks of a recipe's components, for a plugin's own tests).

Names are imported on first use, so ``import ganzoo`` (and ``ganzoo --help``) does not load torch.
"""

from importlib import import_module

from ganzoo.api.errors import GanzooError
from ganzoo.api.hookspecs import hookimpl

__version__ = "0.1.0"

_PUBLIC = {
    "parse_options": "ganzoo.api.options",
    "RunContext": "ganzoo.runtime.context",
    "adam": "ganzoo.runtime.optim",
    "read_bytes": "ganzoo.runtime.untrusted",
    "check_recipe": "ganzoo.engine.checks",
    "AUDIO_DESCRIPTORS": "ganzoo.audio.features",
    **{name: "ganzoo.api.interfaces" for name in (
        "AdversarialLoss", "Architecture", "ArchitectureSpec", "Augmentation", "Auxiliary", "Batch", "Condition",
        "Critic", "CriticArchitecture", "CriticOutput", "Dataset", "FeatureExtractor", "Generator", "ImageData",
        "LatentOptimiser", "MappedGenerator", "Metadata", "Metric", "MetricInputs", "Stateful", "Terms", "TrackIds",
        "Upscaler", "VectorGenerator")},
}

__all__ = sorted([*_PUBLIC, "GanzooError", "hookimpl", "__version__"])


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ganzoo' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
