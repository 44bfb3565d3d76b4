"""The scheduler's events that DaskExecutor listens to, one subscription per Client.

Two topics: "all", where the scheduler announces workers joining and leaving (shared
by every executor on a Client, a handler the user set before kept), and each
executor's own topic, where the tasks it sends say that they started (worker.py).

A Client does not subscribe again when it reconnects to a restarted scheduler (the
new scheduler knows nothing of the old subscriptions): :meth:`ClusterEvents.renew`
sends them again, once per scheduler, when the executor sees that the scheduler it
talks to is not the one it subscribed on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from . import compat

LOGGER = logging.getLogger("corral")


class _Entry:
    """A Client's "all" subscription: the user's handler, corral's, the scheduler."""

    __slots__ = ("fan_out", "handlers", "previous", "scheduler")

    def __init__(self, previous: Any, fan_out: Callable[[Any], None], scheduler: Any) -> None:
        self.previous = previous
        self.fan_out = fan_out
        self.handlers: list[Callable[[Any], None]] = []
        self.scheduler = scheduler


class ClusterEvents:
    """One subscription to the scheduler's "all" events per Client, shared.

    A Client holds one handler per topic: the executors on one client (and a handler
    the user had set before) are called in turn by this one; the last executor to
    leave puts the user's handler back, or unsubscribes.
    """

    _lock = threading.Lock()
    _by_client: dict[int, _Entry] = {}  # noqa: RUF012

    @classmethod
    def join(cls, client: Any, handler: Callable[[Any], None]) -> None:
        with cls._lock:
            entry = cls._by_client.get(id(client))
            first = entry is None
            if entry is None:
                entry = cls._by_client[id(client)] = _Entry(
                    compat.event_handler(client, "all"),
                    lambda event: cls._fan_out(client, event),
                    compat.scheduler_id(client),
                )
            entry.handlers.append(handler)
        if first:
            client.subscribe_topic("all", entry.fan_out)

    @classmethod
    def renew(cls, client: Any, scheduler: Any) -> None:
        """The client now talks to ``scheduler`` (an id): subscribe there, once."""
        with cls._lock:
            entry = cls._by_client.get(id(client))
            if entry is None or entry.scheduler == scheduler:
                return
            entry.scheduler = scheduler
        client.subscribe_topic("all", entry.fan_out)

    @classmethod
    def leave(cls, client: Any, handler: Callable[[Any], None]) -> None:
        with cls._lock:
            entry = cls._by_client.get(id(client))
            if entry is None:
                return
            entry.handlers.remove(handler)
            if entry.handlers:
                return
            del cls._by_client[id(client)]
        if entry.previous is not None:
            client.subscribe_topic("all", entry.previous)
        else:
            client.unsubscribe_topic("all")

    @classmethod
    def _fan_out(cls, client: Any, event: Any) -> None:
        with cls._lock:
            entry = cls._by_client.get(id(client))
            if entry is None:
                return
            handlers = [entry.previous, *entry.handlers]
        for handler in handlers:
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:  # pragma: no cover - a handler's own bug
                LOGGER.exception("corral: a Dask event handler failed")
