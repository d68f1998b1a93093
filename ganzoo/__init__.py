"""ganzoo: a plugin-based GAN zoo for album cover art.

The public API a plugin uses: ``hookimpl`` to mark hook implementations, the interfaces it implements, and
``parse_options`` to validate its options, and ``per_sample_rand`` for per-sample noise that stays the same
whether a batch is trained in one process or split across DDP ranks.

Names are imported on first use, so ``import ganzoo`` (and ``ganzoo --help``) does not load torch.
"""

from importlib import import_module

from ganzoo.errors import GanzooError
from ganzoo.hookspecs import hookimpl

__version__ = "0.1.0"

_PUBLIC = {
    "parse_options": "ganzoo.config",
    "per_sample_rand": "ganzoo.distributed",
    **{name: "ganzoo.interfaces" for name in (
        "AdversarialLoss", "ArchitectureSpec", "Auxiliary", "Condition", "Critic", "CriticOutput",
        "FeatureExtractor", "Generator", "ImageData", "LatentOptimiser", "Metadata", "Terms")},
}

__all__ = sorted([*_PUBLIC, "GanzooError", "hookimpl", "__version__"])


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ganzoo' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
