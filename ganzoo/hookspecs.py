"""The hooks a ganzoo plugin implements.

A plugin is a module (named by an entry point in the ``ganzoo`` group) whose functions are decorated with
``ganzoo.hookimpl`` and named after these specs; every hook is optional. ganzoo calls each ``register_*`` hook
once, when plugins are loaded (the first command that needs them), with a ``register`` callable::

    register(name, factory, *, options=None, description=None, default=False)

``name``
    The component's name in recipes, configs and on the command line. Names are unique within a kind, and
    across the recipe kinds (architectures, losses, latent optimisers, auxiliaries, augmentations).
``factory``
    Called as ``factory(options)`` when a run needs the component; returns an instance of the kind's
    interface in ``ganzoo.interfaces``. ganzoo checks the type and says which plugin broke the promise.
``options``
    A pydantic model of the component's options (``options.NAME`` in the config). ganzoo validates
    ``options.NAME`` against it before any work starts, names bad fields as ``options.NAME.field``, and passes
    the validated model to ``factory``. Without a model the factory gets the raw dict.
``description``
    One line for ``ganzoo plugins`` (the factory's docstring's first line by default).
``default``
    The component used when the user names none of this kind (``dcgan``, ``synthcovers``, ``inception``): at
    most one per kind may claim it.

A hook implementation whose name matches no spec (``register_architecture``) makes its plugin fail to load,
reported by ``ganzoo plugins`` and by any error that names a missing component.
"""

import pluggy

hookspec = pluggy.HookspecMarker("ganzoo")
hookimpl = pluggy.HookimplMarker("ganzoo")


@hookspec
def register_architectures(register):
    """Register generator/critic architectures.

    :param register: ``register(name, factory, ...)``; ``factory(options)`` returns an
        :class:`ganzoo.interfaces.Architecture`, which says which image sizes it supports, whether it takes
        conditions and extra critic outputs, and builds the pair with ``build(spec)``.
    """


@hookspec
def register_losses(register):
    """Register adversarial losses.

    :param register: ``factory(options)`` returns an :class:`ganzoo.interfaces.AdversarialLoss`: its
        optimisers, ``n_critic``, what its phases need (real outputs in the generator phase, gradients with
        respect to the critic's inputs) and the terms of each phase, computed from a :class:`Batch` record.
    """


@hookspec
def register_latent_optimisers(register):
    """Register latent optimisers (LOGAN).

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.LatentOptimiser` that moves the
        latents of the phases in its ``applies_to`` before they are used.
    """


@hookspec
def register_auxiliaries(register):
    """Register auxiliary objectives (ACGAN heads).

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.Auxiliary`, which names the
        extra critic outputs it needs and adds terms to both phases.
    """


@hookspec
def register_augmentations(register):
    """Register differentiable augmentations applied to every image the critic sees (DiffAugment, ADA).

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.Augmentation`.
    """


@hookspec
def register_conditions(register):
    """Register conditions, listed in the config's ``conditions``.

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.Condition` that is fitted to the
        training table and encodes metadata rows as vectors.
    """


@hookspec
def register_datasets(register):
    """Register datasets, chosen with ``data.name``.

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.Dataset`, which says which image
        sizes it can give and loads an :class:`ganzoo.interfaces.ImageData`.
    """


@hookspec
def register_feature_extractors(register):
    """Register image feature extractors for metrics (``--extractor``, ``eval_extractor``).

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.FeatureExtractor`.
    """


@hookspec
def register_metrics(register):
    """Register metrics for ``ganzoo bench --metric`` and ``eval_metrics`` during training.

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.Metric`, which states the fewest
        images it can be computed from and what it needs (features, logits, a reference, a sampler).
    """


@hookspec
def register_track_ids(register):
    """Register readers of track identifiers, for looking tracks up in a features file (``--tracks``).

    :param register: ``factory(options)`` returns a :class:`ganzoo.interfaces.TrackIds`: the id columns of a
        features file and a parser from pasted text (an id, URI or URL) to the id.
    """


@hookspec
def register_commands(register):
    """Add command-line commands.

    :param register: ``register(command, group=None)``: a click command or group, added to ``ganzoo`` itself or
        to the named group (``"data"``). Called when the command line first needs plugin commands.
    """
