"""From a config to components, once: every component a run uses is resolved against the registry and built from
its validated options here, before any data is opened, and the rest of the engine (the model, the loop, the
evaluation, sampling) takes them from the plan instead of asking the registry again.

``plan_networks`` is what sampling needs (the architecture and the conditions); ``plan_run`` is a training run
(those, the recipe's other components, the data sources and the evaluation's metrics and extractor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganzoo.api.errors import GanzooError, warn
from ganzoo.api.interfaces import (AdversarialLoss, Architecture, ArchitectureSpec, Augmentation, Auxiliary, Condition,
                                   Critic, CriticArchitecture, Generator, LatentOptimiser)
from ganzoo.data.sources import DataSource, describe_sizes, resolve_source
from ganzoo.evaluation.scoring import ScoringPlan, plan_scoring
from ganzoo.registry.components import Recipe, Registry, blame
from ganzoo.runtime.checkpoint import checkpoint_config
from ganzoo.runtime.config import TrainConfig


@dataclass
class NetworkPlan:
    """What building a run's networks takes: its architecture, the critic chosen apart from it if the recipe
    names one, and its conditions (built, not fitted), with the labels errors name them by."""

    architecture: Architecture
    conditions: dict[str, Condition]
    labels: dict[str, str]
    architecture_name: str
    critic: CriticArchitecture | None = None
    critic_name: str | None = None

    @property
    def architecture_label(self) -> str:
        return self.labels[self.architecture_name]

    @property
    def critic_label(self) -> str:
        """Who builds the critic: the recipe's critic, or its architecture."""
        return self.labels[self.critic_name or self.architecture_name]

    def check(self, image_size: int, conditional: bool, asking_for_outputs: list[str], prefix: str = "") -> None:
        """Refuse what the architecture, or the recipe's critic, said it cannot build."""
        check_architecture(self.architecture, self.architecture_label, image_size, conditional,
                           [] if self.critic else asking_for_outputs, prefix)
        if self.critic is not None:
            check_architecture(self.critic, self.critic_label, image_size, conditional, asking_for_outputs, prefix)

    def build(self, spec: ArchitectureSpec) -> tuple[Generator, Critic]:
        """A fresh (generator, critic) for ``spec``: the architecture's generator and critic, or its generator and
        the recipe's critic; a broken promise names the plugin."""
        with blame(self.architecture_label, "failed to build its networks"):
            networks = self.architecture.build(spec)
        if not (isinstance(networks, tuple) and len(networks) == 2 and isinstance(networks[0], Generator)
                and isinstance(networks[1], Critic)):
            raise GanzooError(f"{self.architecture_label} broke its promise: build must return (Generator, Critic)")
        if self.critic is None:
            return networks
        with blame(self.critic_label, "failed to build its critic"):
            critic = self.critic.build(spec)
        if not isinstance(critic, Critic):
            raise GanzooError(f"{self.critic_label} broke its promise: build must return a Critic")
        return networks[0], critic

    def critic_blocks(self, critic: Critic) -> list:
        """The critic's blocks from input to output, as whoever built it lists them."""
        return (self.critic or self.architecture).critic_blocks(critic)


@dataclass
class RunPlan:
    """A training config resolved against the registry: every component of the run, built once.

    ``config`` is the given config with the defaults the plugins declare filled in (the recipe, the evaluation's
    metrics), so that config.json and checkpoints say what ran.
    """

    config: TrainConfig
    registry: Registry
    recipe: Recipe
    networks: NetworkPlan
    loss: AdversarialLoss
    latent_optimiser: LatentOptimiser | None
    auxiliaries: dict[str, Auxiliary]
    augmentations: dict[str, Augmentation]
    data: DataSource
    reference: DataSource | None = None
    """The evaluation's reference, when it is not the training data."""
    scoring: ScoringPlan | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def architecture(self) -> Architecture:
        return self.networks.architecture

    @property
    def conditions(self) -> dict[str, Condition]:
        return self.networks.conditions

    def label(self, name: str) -> str:
        """How errors name one of the run's components: ``loss 'wgan' (plugin 'wgan')``."""
        return self.labels[name]


def plan_networks(config: TrainConfig, registry: Registry) -> NetworkPlan:
    """The architecture of ``config``'s recipe and its conditions, built from their options, after checking that
    the architecture builds the image size and takes the conditions."""
    recipe = registry.recipe(config.recipe, config.data.image_size)
    component, critic = recipe.architecture, recipe.one("critic")
    architecture = registry.create("architecture", component.name, config.options.get(component.name))
    conditions = {name: registry.create("condition", name, config.options.get(name)) for name in config.model.conditions}
    labels = ({component.name: component.label} | {name: registry.get("condition", name).label for name in conditions}
              | ({critic.name: critic.label} if critic else {}))
    plan = NetworkPlan(architecture, conditions, labels, component.name,
                       registry.create("critic", critic.name, config.options.get(critic.name)) if critic else None,
                       critic.name if critic else None)
    plan.check(config.data.image_size, bool(conditions), [])
    return plan


def stored_config(state: dict[str, Any], registry: Registry, path: str | Path = "checkpoint") -> TrainConfig:
    """The config a checkpoint holds, validated, without the options that name files on this machine (weights
    files): those were someone else's choice, and are never followed."""
    config = checkpoint_config(state, path)
    return config.model_copy(update={"options": registry.without_local_paths(config.options)})


def plan_run(config: TrainConfig, registry: Registry) -> RunPlan:
    """Resolve a training config and check it before any data is touched: the recipe, every ``options.NAME``
    (the recipe's, the conditions', the datasets' and the evaluation's), options nothing uses, and what the
    architecture supports (image size, conditions, extra critic outputs)."""
    recipe = registry.recipe(config.recipe, config.data.image_size)
    scoring = None
    if config.evaluation.every:
        scoring = plan_scoring(config.evaluation.metrics, config.evaluation.extractor, config.options, registry)
    config = config.model_copy(update={"recipe": recipe.resolved, "evaluation": config.evaluation.model_copy(
        update={"metrics": list(scoring.metrics) if scoring else config.evaluation.metrics})})
    data = resolve_source(config.data.name, registry, config.options)
    reference = (resolve_source(config.evaluation.reference, registry, config.options)
                 if scoring and config.evaluation.reference else None)
    config = without_other_datasets_options(config, data, reference, registry)
    check_unused_options(config, recipe, data, reference, scoring)
    networks = plan_networks(config, registry)

    def create(component):
        return registry.create(component.kind, component.name, config.options.get(component.name))

    plan = RunPlan(config=config, registry=registry, recipe=recipe, networks=networks, loss=create(recipe.loss),
                   latent_optimiser=create(recipe.latent_optimiser) if recipe.latent_optimiser else None,
                   auxiliaries={c.name: create(c) for c in recipe.auxiliaries},
                   augmentations={c.name: create(c) for c in recipe.augmentations}, data=data, reference=reference,
                   scoring=scoring,
                   labels={c.name: c.label for c in recipe.components} | networks.labels
                   | (scoring.labels if scoring else {}))
    networks.check(config.data.image_size, bool(plan.conditions), [plan.label(name) for name in plan.auxiliaries])
    return plan


def without_other_datasets_options(config: TrainConfig, data: DataSource, reference: DataSource | None,
                                   registry: Registry) -> TrainConfig:
    """``config`` without the options of datasets it does not train or evaluate on, said in a warning: a config
    file written for one dataset (the quick start's) combines with another ``data.name``."""
    used = {source.name for source in (data, reference) if source is not None}
    ignored = sorted(name for name in config.options if name in registry.components["dataset"] and name not in used)
    if not ignored:
        return config
    warn(f"ignoring options for {', '.join(ignored)}: this run's data is {data.name!r}")
    return config.model_copy(update={"options": {k: v for k, v in config.options.items() if k not in ignored}})


def check_unused_options(config: TrainConfig, recipe: Recipe, data: DataSource, reference: DataSource | None,
                         scoring: ScoringPlan | None) -> None:
    """Refuse ``options.NAME`` for a component this run does not use: a typo, or a setting that would be ignored."""
    used = ({c.name for c in recipe.components} | set(config.model.conditions)
            | {source.name for source in (data, reference) if source is not None and source.is_plugin}
            | (set(scoring.labels) if scoring else set()))
    unused = set(config.options) - used
    if unused:
        raise GanzooError(f"invalid config: options for {', '.join(sorted(unused))}, which this run does not use "
                          f"(recipe {recipe.text!r}, dataset {data.name!r}, conditions {config.model.conditions})")


def check_architecture(architecture: Architecture | CriticArchitecture, label: str, image_size: int,
                       conditional: bool, asking_for_outputs: list[str], prefix: str = "") -> None:
    """Refuse an image size, conditions or extra critic outputs (asked for by ``asking_for_outputs``) that the
    architecture said it cannot build; ``prefix`` starts the message (a checkpoint's, say)."""
    if image_size not in architecture.image_sizes:
        raise GanzooError(f"{prefix}{label} builds images of {describe_sizes(architecture.image_sizes)} px, not "
                          f"data.image_size={image_size}")
    if conditional and not architecture.conditional:
        raise GanzooError(f"{prefix}{label} does not take conditions, and this run has conditions; choose a "
                          "conditional architecture or no conditions")
    if asking_for_outputs and not architecture.extra_outputs:
        raise GanzooError(f"{prefix}{label} cannot give the critic the extra outputs that "
                          f"{', '.join(asking_for_outputs)} needs")
