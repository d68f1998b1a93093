"""ganzoo: a plugin-based GAN zoo for album cover art.

The public API a plugin uses: ``hookimpl`` to mark hook implementations, the interfaces it implements, and
``parse_options`` to validate its options, and ``per_sample_rand`` for per-sample noise that stays the same
whether a batch is trained in one process or split across DDP ranks.
"""

from ganzoo.config import parse_options
from ganzoo.distributed import per_sample_rand
from ganzoo.errors import GanzooError
from ganzoo.hookspecs import hookimpl
from ganzoo.interfaces import (AdversarialLoss, ArchitectureSpec, Auxiliary, Condition, Critic, CriticOutput,
                               FeatureExtractor, Generator, ImageData, LatentOptimiser, Metadata, Terms)

__version__ = "0.1.0"

__all__ = ["AdversarialLoss", "ArchitectureSpec", "Auxiliary", "Condition", "Critic", "CriticOutput",
           "FeatureExtractor", "GanzooError", "Generator", "ImageData", "LatentOptimiser", "Metadata", "Terms",
           "hookimpl", "parse_options", "per_sample_rand", "__version__"]
