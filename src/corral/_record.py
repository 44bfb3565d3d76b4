"""A small immutable record: what ``dataclass(frozen=True)`` gave ``TaskOptions`` and
``Statistics``, without importing ``dataclasses`` (and ``inspect`` with it): about 10 ms
of every program's first pool, for three dunder methods."""

from __future__ import annotations

TYPE_CHECKING = False  # (no typing import at run time)
if TYPE_CHECKING:
    from typing import Any


class Record:
    """Fields named by ``_fields``; set once by ``__init__`` through ``_set``."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied (their checks are the caller's)."""
        copy = object.__new__(type(self))
        for name in self._fields:
            object.__setattr__(copy, name, changes.get(name, getattr(self, name)))
        return copy

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._values()))


def _rebuild(cls: type[Record], values: tuple[Any, ...]) -> Record:
    record = object.__new__(cls)
    for name, value in zip(cls._fields, values, strict=True):
        object.__setattr__(record, name, value)
    return record
