"""ganzoo: a plugin-based GAN zoo for album cover art.

The public API a plugin uses: ``hookimpl`` to mark hook implementations, the interfaces it implements, and
``parse_options`` to validate its options.
"""

from ganzoo.config import parse_options
from ganzoo.errors import GanzooError
from ganzoo.hookspecs import hookimpl
from ganzoo.interfaces import (AdversarialLoss, ArchitectureSpec, Auxiliary, Condition, Critic, CriticOutput,
                               FeatureExtractor, Generator, ImageData, LatentOptimiser, Metadata, Terms)

__version__ = "0.1.0"

__all__ = ["AdversarialLoss", "ArchitectureSpec", "Auxiliary", "Condition", "Critic", "CriticOutput",
           "FeatureExtractor", "GanzooError", "Generator", "ImageData", "LatentOptimiser", "Metadata", "Terms",
           "hookimpl", "parse_options", "__version__"]
