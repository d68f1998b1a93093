"""The hooks a ganzoo plugin implements. Each receives a ``register(name, factory)`` callable.

A plugin is any module (or object) with functions decorated by ``ganzoo.hookimpl`` whose names match these specs.
Every hook is optional. The factory's contract for each kind is documented in ``ganzoo.interfaces``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("ganzoo")
hookimpl = pluggy.HookimplMarker("ganzoo")


@hookspec
def register_architectures(register):
    """Register generator/critic pairs: ``register("dcgan", factory)``, factory(spec, options) -> (G, D)."""


@hookspec
def register_losses(register):
    """Register adversarial losses: ``register("wgan", factory)``, factory(options) -> AdversarialLoss."""


@hookspec
def register_latent_optimisers(register):
    """Register latent optimisers: ``register("logan", factory)``, factory(options) -> LatentOptimiser."""


@hookspec
def register_auxiliaries(register):
    """Register auxiliary objectives: ``register("acgan", factory)``, factory(options) -> Auxiliary."""


@hookspec
def register_conditions(register):
    """Register conditions: ``register("audio-features", factory)``, factory(options) -> Condition."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register("synthcovers", factory)``, factory(data_config) -> ImageDataset."""


@hookspec
def register_feature_extractors(register):
    """Register image feature extractors for metrics: factory(options) -> FeatureExtractor."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``ganzoo`` command-line group."""
