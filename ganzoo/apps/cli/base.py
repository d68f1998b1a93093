"""What every ``ganzoo`` command shares: errors shown as one line, the root group that loads plugins (and torch)
only when a command needs them, groups plugins add commands to, and parameters checked against the registry."""

from __future__ import annotations

import click

from ganzoo.api.errors import GanzooError

MAX_MESSAGE = 1000
OUT_OF_MEMORY = ("ran out of memory: this process's limit (ulimit -v, a cgroup) or the machine's free memory is "
                 "smaller than the work asked for; ask for less (fewer or smaller covers, a smaller model or batch)")


class UserError(click.ClickException):
    """A GanzooError as the user sees it: one line of at most MAX_MESSAGE characters, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        text = " ".join(message.split())
        if len(text) > MAX_MESSAGE:
            text = f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE} more characters)"
        super().__init__(text)


class GanzooGroup(click.Group):
    """Shows a GanzooError as one line on stderr with exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GanzooError as error:
            raise UserError(str(error)) from None
        except MemoryError:
            raise UserError(OUT_OF_MEMORY) from None
        except RuntimeError as error:  # torch's allocator says so in a RuntimeError
            if not any(sign in str(error).lower() for sign in ("can't allocate memory", "out of memory")):
                raise
            raise UserError(f"{OUT_OF_MEMORY} ({str(error).splitlines()[0][:160]})") from None


class RootGroup(GanzooGroup):
    """The ``ganzoo`` group. Plugins are loaded (and torch with them) only when a command needs them, so
    ``ganzoo --help`` and ``ganzoo --version`` answer at once."""

    plugin_commands_added = False

    def add_plugin_commands(self) -> None:
        if not self.plugin_commands_added:
            self.plugin_commands_added = True
            from ganzoo.registry.loading import get_registry
            get_registry().add_commands(self)

    def get_command(self, ctx, name):
        if name not in self.commands:
            self.add_plugin_commands()
        return super().get_command(ctx, name)


class PluginCommandsGroup(GanzooGroup):
    """A group plugins add subcommands to (``data``): listing or resolving them loads the plugins."""

    def list_commands(self, ctx):
        ctx.find_root().command.add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        if name not in self.commands:
            ctx.find_root().command.add_plugin_commands()
        return super().get_command(ctx, name)


class RegistryChoice(click.ParamType):
    """A component name of one kind, checked against (and listed from) the plugin registry."""

    name = "name"

    def __init__(self, kind: str):
        self.kind = kind

    def get_metavar(self, param, ctx=None):
        from ganzoo.registry.loading import get_registry
        return "[" + "|".join(get_registry().names(self.kind)) + "]"

    def convert(self, value, param, ctx):
        from ganzoo.registry.loading import get_registry
        return get_registry().get(self.kind, value).name




class DefaultCommandGroup(GanzooGroup):
    """A group whose first argument, when it names no subcommand, goes to the default subcommand; its help
    shows the default subcommand's options too."""

    default_command = "run"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter):
        super().format_help(ctx, formatter)
        default = self.commands[self.default_command]
        records = [record for param in default.get_params(ctx)
                   if isinstance(param, click.Option) and (record := param.get_help_record(ctx))]
        with formatter.section(f"Options of `{ctx.command_path} [{self.default_command}] SOURCE`"):
            formatter.write_dl(records)


def component_options(assignments: tuple[str, ...], kinds: tuple[str, ...] = ()) -> dict[str, dict]:
    """``options.NAME.field=value`` assignments (``--set``) as a dict of options by component name; with
    ``kinds``, each NAME must be a component of one of them and its fields its options (validated), so a
    setting the command does not use is refused rather than ignored."""
    from ganzoo.runtime.config import apply_override

    data: dict = {}
    for assignment in assignments:
        if not assignment.startswith("options."):
            raise GanzooError(f"--set here takes component options, options.NAME.field=value, not {assignment!r}")
        apply_override(data, assignment)
    options = data.get("options", {})
    bad = [name for name, value in options.items() if not isinstance(value, dict)]
    if bad:
        raise GanzooError(f"--set options.{bad[0]} needs a field: options.{bad[0]}.FIELD=VALUE")
    if kinds and options:
        from ganzoo.registry.loading import get_registry

        registry = get_registry()
        for name, values in options.items():
            found = next((registry.get(kind, name) for kind in kinds if name in registry.components[kind]), None)
            if found is None:
                usable = sorted(n for kind in kinds for n in registry.components[kind])
                raise GanzooError(f"--set options.{name}: this command uses no component {name!r} (its options "
                                  f"are for: {', '.join(usable)})")
            if found.options is None:
                raise GanzooError(f"--set options.{name}: {found.label} takes no options")
            found.parse_options(values)
    return options
