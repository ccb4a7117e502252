"""Live introspection: the actor tree as typed data (``rt.tree()``, ``GET /tree``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from understudy.meter import clock
from understudy.metrics._collector import state_of

if TYPE_CHECKING:
    from understudy.actors import Cell


class ActorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one live actor identity and, nested, its children.

    ``name`` is the actor's name, or its generated id (``Class#n``) when unnamed;
    ``actor_class`` (``"class"`` in JSON) its class. ``state`` is ``running``,
    ``restarting`` or ``stopped``. ``oldest_message_age`` is how long the oldest *stamped*
    queued message has waited so far, in seconds (None when none is stamped; messages are
    stamped by sample, see :mod:`understudy.meter`, so the head of the queue may be older).
    ``handling`` is the type of the message being handled (or last handled, when the actor
    is between batches), None when it waits for mail. ``messages`` and ``errors`` count
    handled messages and those whose handler raised; ``restarts`` counts restarts.
    """

    name: str
    actor_class: str = msgspec.field(name="class")
    state: str
    mailbox_depth: int
    mailbox_capacity: int
    oldest_message_age: float | None = None
    handling: str | None = None
    messages: int = 0
    errors: int = 0
    restarts: int = 0
    children: list[ActorInfo] = msgspec.field(default_factory=list)


def info_of(cell: Cell, now: float) -> ActorInfo:
    """Snapshot ``cell`` and its children. Never blocks."""
    mailbox = cell.mailbox
    oldest: float | None = None
    for envelope in mailbox.queue:
        if envelope[4]:
            oldest = now - envelope[4]
            break
    message = cell.current[0]
    handling = (
        type(message).__qualname__
        if message is not None and mailbox.waiter is None and cell.instance is not None
        else None
    )
    children = cell.children
    return ActorInfo(
        name=cell.label,
        actor_class=cell.actor_class.__qualname__,
        state=state_of(cell),
        mailbox_depth=len(mailbox.queue),
        mailbox_capacity=mailbox.capacity,
        oldest_message_age=oldest,
        handling=handling,
        messages=cell.meter.handled,
        errors=cell.meter.errors,
        restarts=cell.restarts,
        # An entity type's cells are summed up by understudy.entities, not listed one by one.
        children=[info_of(child, now) for child in children.values()]
        if children and not getattr(cell.instance, "hides_children", False)
        else [],
    )


def tree_of(cells: Iterable[Cell]) -> list[ActorInfo]:
    """The trees rooted at the top-level cells among ``cells``, in spawn order.

    Where entities (many actors of one type, keyed by id) are to appear as one row per type
    with a count rather than one row per entity, :func:`info_of` is the place: fold such a
    cell's children into per-type rows there (``/tree`` and ``understudy tree`` follow)."""
    now = clock()
    return [info_of(cell, now) for cell in cells if cell.parent is None]


__all__ = ["ActorInfo", "tree_of"]
