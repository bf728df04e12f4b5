"""The ``jobforge`` root command group: sub-commands whose modules are imported only when they run.

``jobforge --help`` lists every command from :class:`Lazy` entries (name, ``module:attribute``, the first
paragraph of its help) without importing the command modules; running ``jobforge NOUN VERB`` imports the
one module NOUN lives in. Each module then imports what its command needs (Temporal, SQLAlchemy,
OpenTelemetry, the dev stack) inside the command's function. The help is plain text (Typer's rich-less
mode): rendering it with rich would import rich, markdown-it and pygments on every ``--help``.

``commands`` is a mapping that loads an entry when it is looked up, so code that walks
``group.commands`` (the documentation generator, tests) sees every command and option.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class Lazy:
    """A root sub-command defined elsewhere: a ``typer.Typer`` app (a group) or a command function."""

    name: str
    #: ``package.module:attribute``
    target: str
    #: the first paragraph of its help, shown by ``jobforge --help`` without importing ``target``
    help: str

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        obj = getattr(importlib.import_module(module), attribute)
        if not isinstance(obj, typer.Typer):  # a command function: a one-command app
            single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
            single.command(self.name)(obj)
            return _named(typer.main.get_command(single), self.name)
        # an app is a group even with one command (`jobforge temporal setup`), as ``add_typer`` makes it
        return _named(typer.main.get_group(obj), self.name)


def _named(command: Any, name: str) -> Any:
    command.name = name
    plain(command)
    return command


def plain(command: Any) -> None:
    """Plain-text help and errors for ``command`` and everything under it (no rich import), and a ``--help``
    whose value is a bool when it is not given (:func:`_bool_help`)."""
    if isinstance(command, TyperGroup | TyperCommand):
        command.rich_markup_mode = None
        _bool_help(command)
    commands = getattr(command, "commands", {})
    for sub in (commands.loaded() if isinstance(commands, LazyCommands) else commands.values()):
        plain(sub)


def _bool_help(command: TyperGroup | TyperCommand) -> None:
    """``--help`` not given is ``False``, not ``None``: Typer converts a bool flag's value only when it is
    not a bool, and the conversion imports pydantic (about a third of a store-only command's start-up;
    docs/operations.md). The option is made once per command, when the command first parses."""
    make = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option

    command.get_help_option = get_help_option  # type: ignore[method-assign]


class LazyCommands(MutableMapping[str, Any]):
    """Commands by name, in a fixed order; a :class:`Lazy` entry is loaded the first time it is read."""

    def __init__(self, loaded: MutableMapping[str, Any], lazy: tuple[Lazy, ...], order: tuple[str, ...]) -> None:
        self._loaded = dict(loaded)
        self._lazy = {entry.name: entry for entry in lazy if entry.name not in self._loaded}
        self._order = order

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            entry = self._lazy.pop(name)  # KeyError for an unknown name, as a dict
            self._loaded[name] = entry.load()
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._lazy.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if self._lazy.pop(name, None) is None:
            del self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        names = [*self._loaded, *self._lazy]
        rank = {name: i for i, name in enumerate(self._order)}
        return iter(sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n))))

    def __len__(self) -> int:
        return len(self._loaded) + len(self._lazy)

    def loaded(self) -> list[Any]:
        """The commands loaded so far."""
        return list(self._loaded.values())

    def pending(self, name: str) -> Lazy | None:
        """The entry of ``name`` while it is not loaded yet."""
        return self._lazy.get(name)


class LazyGroup(TyperGroup):
    """A Typer group whose :attr:`LAZY` sub-commands are imported on demand (set both in a subclass)."""

    LAZY: tuple[Lazy, ...] = ()
    #: the order ``--help`` lists commands in (names not in it come last)
    ORDER: tuple[str, ...] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.commands, self.LAZY, self.ORDER)
        plain(self)

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return list(self.commands)  # names only: nothing is imported

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        """The ``Commands`` section, each lazy entry from its :class:`Lazy` help (click's layout)."""
        from typer._click.utils import make_default_short_help

        assert isinstance(self.commands, LazyCommands)
        rows: list[tuple[str, Any]] = []
        for name in self.list_commands(ctx):
            entry = self.commands.pending(name)
            if entry is None:
                command = self.commands[name]
                if not command.hidden:
                    rows.append((name, command))
            else:
                rows.append((name, entry.help))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        lines = [(name, make_default_short_help(what, limit) if isinstance(what, str)
                  else what.get_short_help_str(limit)) for name, what in rows]
        with formatter.section("Commands"):
            formatter.write_dl(lines)
