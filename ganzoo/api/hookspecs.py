"""The hooks a ganzoo plugin implements, one per kind of component.

A plugin is a module (named by an entry point in the ``ganzoo`` group) whose functions are decorated with
``ganzoo.hookimpl`` and named after these specs; every hook is optional. ganzoo calls each ``register_*`` hook
once, when plugins are loaded (the first command that needs them), with a ``register`` callable::

    register(name, factory, *, options=None, description=None, default=False)

``name``
    The component's name in recipes, configs and on the command line. Names are unique within a kind, and
    across the recipe kinds (architectures, losses, latent optimisers, auxiliaries, augmentations).
``factory``
    Called as ``factory(options)`` when a run needs the component; returns an instance of the kind's
    interface in ``ganzoo.api.interfaces``. ganzoo checks the type and says which plugin broke the promise.
``options``
    A pydantic model of the component's options (``options.NAME`` in the config). ganzoo validates
    ``options.NAME`` against it before any work starts, names bad fields as ``options.NAME.field``, refuses
    fields the model does not declare, and passes the validated model to ``factory``. Without a model the
    factory gets the raw dict.
``description``
    One line for ``ganzoo plugins`` (the factory's docstring's first line by default).
``default``
    The component used when the user names none of this kind (an architecture, a dataset, a feature extractor,
    a metric, a track id reader). For the recipe kinds, the defaults together make the default recipe, the one
    ``ganzoo train`` runs when given none; a recipe the user names gets the default architecture only. ``True``
    claims it at every image size, a collection of sizes (``range(64, 1025)``) at those only. At most one
    component per kind may claim it at any one size: where two do, a run that needs that default stops with one
    line naming both (other runs go on), and ``ganzoo plugins`` lists the clash.

Each spec below is marked with its kind (``kind``): the name ganzoo uses for it, the interface its factories
return and how a sentence names one. Adding a kind of component is a spec here and an interface in
``ganzoo.api.interfaces``; the registry reads the kinds from this module.

A hook implementation whose name matches no spec (``register_architecture``) makes its plugin fail to load,
reported by ``ganzoo plugins`` and by any error that names a missing component.
"""

from dataclasses import dataclass

import pluggy

hookspec = pluggy.HookspecMarker("ganzoo")
hookimpl = pluggy.HookimplMarker("ganzoo")


@dataclass(frozen=True)
class Kind:
    """A kind of component: its ``name``, the hook that registers it, the name of its interface in
    ``ganzoo.api.interfaces``, how a sentence names one (``an architecture``), whether it is part of a recipe
    (joined with '+' in ``ganzoo train RECIPE``) and, if so, whether a recipe holds at most one (``single``)."""

    name: str
    hook: str
    interface: str
    article: str
    recipe: bool = False
    single: bool = False


KINDS: dict[str, Kind] = {}
"""Every kind, by name, in the order of the specs below."""


def kind(name: str, interface: str, article: str, recipe: bool = False, single: bool = False):
    """Mark a hook spec as registering components of a kind."""
    def mark(spec):
        KINDS[name] = Kind(name, spec.__name__, interface, article, recipe, single)
        return spec
    return mark


@hookspec
@kind("architecture", "Architecture", "an architecture", recipe=True, single=True)
def register_architectures(register):
    """Register generator/critic architectures.

    ``factory(options)`` returns an :class:`Architecture`, which says which image sizes it supports, whether it
    takes conditions and extra critic outputs, and builds the pair with ``build(spec)``::

        register("mlp", lambda options: MLP(options), options=MLPOptions)
    """


@hookspec
@kind("critic", "CriticArchitecture", "a critic", recipe=True, single=True)
def register_critics(register):
    """Register critics chosen apart from the generator: a recipe that names one trains its architecture's
    generator against it (``fastgan+projected+hinge``).

    ``factory(options)`` returns a :class:`CriticArchitecture`, which says which image sizes it supports and
    builds the critic with ``build(spec)``::

        register("projected", Projected, options=ProjectedOptions)
    """


@hookspec
@kind("loss", "AdversarialLoss", "a loss", recipe=True, single=True)
def register_losses(register):
    """Register adversarial losses.

    ``factory(options)`` returns an :class:`AdversarialLoss`: its optimisers, ``n_critic``, what its phases need
    (real outputs in the generator phase, gradients with respect to the critic's inputs) and the terms of each
    phase, computed from a :class:`Batch` record::

        register("lsgan", LeastSquares, options=LeastSquaresOptions)
    """


@hookspec
@kind("latent_optimiser", "LatentOptimiser", "a latent optimiser", recipe=True, single=True)
def register_latent_optimisers(register):
    """Register latent optimisers (LOGAN).

    ``factory(options)`` returns a :class:`LatentOptimiser` that moves the latents of the phases in its
    ``applies_to`` before they are used::

        register("logan", LOGAN, options=LOGANOptions)
    """


@hookspec
@kind("auxiliary", "Auxiliary", "an auxiliary objective", recipe=True)
def register_auxiliaries(register):
    """Register auxiliary objectives (ACGAN heads, self-supervised decoders).

    ``factory(options)`` returns an :class:`Auxiliary`, which names the extra critic outputs it needs and adds
    terms to both phases::

        register("acgan", ACGAN, options=ACGANOptions)
    """


@hookspec
@kind("augmentation", "Augmentation", "an augmentation", recipe=True)
def register_augmentations(register):
    """Register differentiable augmentations applied to every image the critic sees (DiffAugment, ADA).

    ``factory(options)`` returns an :class:`Augmentation`::

        register("flip", lambda options: RandomFlip())
    """


@hookspec
@kind("condition", "Condition", "a condition")
def register_conditions(register):
    """Register conditions, listed in the config's ``model.conditions``.

    ``factory(options)`` returns a :class:`Condition` that is fitted to the training table and encodes metadata
    rows as vectors::

        register("year", lambda options: Decade(options.column), options=DecadeOptions)
    """


@hookspec
@kind("dataset", "Dataset", "a dataset")
def register_datasets(register):
    """Register datasets, chosen with ``data.name``.

    ``factory(options)`` returns a :class:`Dataset`, which says which image sizes it can give and loads an
    :class:`ImageData`::

        register("stripes", Stripes, options=StripesOptions)
    """


@hookspec
@kind("feature_extractor", "FeatureExtractor", "a feature extractor")
def register_feature_extractors(register):
    """Register image feature extractors for metrics (``--extractor``, ``evaluation.extractor``).

    ``factory(options)`` returns a :class:`FeatureExtractor`::

        register("dino", DinoFeatures, options=DinoOptions)
    """


@hookspec
@kind("metric", "Metric", "a metric")
def register_metrics(register):
    """Register metrics for ``ganzoo bench --metric`` and ``evaluation.metrics`` during training.

    ``factory(options)`` returns a :class:`Metric`, which states the fewest images it can be computed from and
    what it needs (features, logits, pixels, a reference, a sampler)::

        register("mean-colour", lambda options: MeanColourDistance())
    """


@hookspec
@kind("track_ids", "TrackIds", "a track id reader")
def register_track_ids(register):
    """Register readers of track identifiers, for looking tracks up in a features file (``--tracks``).

    ``factory(options)`` returns a :class:`TrackIds`: the id columns of a features file and a parser from pasted
    text (an id, URI or URL) to the id::

        register("deezer", lambda options: DeezerIds())
    """


@hookspec
@kind("upscaler", "Upscaler", "an upscaler")
def register_upscalers(register):
    """Register upscalers, which make a cover larger for ``generate --size`` (a resampling filter, or a learned
    super-resolution network).

    ``factory(options)`` returns an :class:`Upscaler`::

        register("esrgan", lambda options: MyEsrgan(options), options=EsrganOptions)
    """


@hookspec
def register_recipes(register):
    """Register the settings a recipe was published with (its paper's code), and those it was measured best
    with on a CPU and on a GPU. ``ganzoo train`` applies them where the user sets nothing else (``--set``,
    a config file and ``--init-from``'s inherited settings always win) and says so in its start banner.

    ``register(recipe, *, settings=None, cpu=None, gpu=None, source="", leaves_noise=None)``: ``recipe`` names
    components joined
    with '+'; its settings apply to every run whose recipe holds all of them (the architecture counts also when
    a recipe leaves it implicit), and the more components a registration names, the later it applies, so a
    specific registration refines a general one. ``settings`` maps dotted config keys to values
    (``{"options.hinge.n_critic": 1}``); ``cpu`` and ``gpu`` add to them or replace them on that kind of device;
    ``source`` says where the values come from; ``leaves_noise`` maps image sizes to the generator steps after
    which the recipe's sample grids left the noise phase at its CPU settings, as measured, which ``ganzoo train``
    compares its budget with::

        register("fastgan+projected+hinge", settings={"options.hinge.n_critic": 1}, cpu={"model.width": 16},
                 source="Projected GAN (Sauer et al. 2021), train.py")
    """


@hookspec
def register_commands(register):
    """Add command-line commands.

    ``register(command, group=None)``: a click command or group, added to ``ganzoo`` itself or to the named
    group (``"data"``). Called when the command line first needs plugin commands::

        register(my_click_command, group="data")
    """
