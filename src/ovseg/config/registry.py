"""One shape for a setting that chooses among implementations (mask models, generators, edit backends,
propagators, engines): the names are the setting's allowed values, and the choice is made in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ovseg.errors import OvsegError

T = TypeVar("T")
AUTO = "auto"


class Registry(Generic[T]):
    """A setting's choice among implementations: mask models, mask generators, edit backends, propagators, engines.

    One shape for all of them (a name -> a factory, the names in order, an optional ``auto`` resolver), so each
    choice is made in one place and a wrong name is the same one line everywhere, listing what exists. Factories
    import their module when called: listing or checking names loads nothing heavy.
    """

    def __init__(
        self, setting: str, factories: dict[str, Callable[..., T]], auto: Callable[..., str] | None = None
    ) -> None:
        self.setting, self._factories, self._auto = setting, dict(factories), auto

    def names(self) -> list[str]:
        """The implementations, in the order they were registered (``auto`` not included)."""
        return list(self._factories)

    def choices(self) -> list[str]:
        """What the setting may say: ``auto`` (when it has a resolver) and every name."""
        return [AUTO, *self._factories] if self._auto is not None else self.names()

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def check(self, name: str) -> None:
        """One line unless ``name`` is among :meth:`choices` (before any work; ``auto`` is resolved later)."""
        if name not in self.choices():
            raise OvsegError(f"{self.setting} must be one of {', '.join(self.choices())}, got {name!r}")

    def resolve(self, name: str, *context: Any) -> str:
        """``name`` checked, with ``auto`` made concrete from ``context`` (what the resolver reads)."""
        self.check(name)
        return self._auto(*context) if name == AUTO else name

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """The implementation ``name`` names (``auto`` must be resolved first), made from ``args``."""
        if name == AUTO:
            raise OvsegError(f"{self.setting}: auto is decided by what a run needs; resolve it before making one")
        return self._factories[self.resolve(name)](*args, **kwargs)
