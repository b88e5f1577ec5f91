"""Pure decisions about an app node's two gunicorn slots, from its state (`releases.parse_state`).

    live      the slot the proxies send requests to (None before the first deploy: slot a's port is the default)
    booting   a deploy boots the new release in the slot that is not live
    warm      a slot that runs a given release, is not live, and whose gunicorn is up: a rollback's shortcut
"""
from __future__ import annotations

from ..layout import SLOTS, Layout, other_slot, slot_port
from .releases import NodeState

DEFAULT_SLOT = SLOTS[0]


def running(layout: Layout, state: NodeState, slot: str) -> bool:
    p = state.programs.get(layout.slot_program(slot))
    return p is not None and p.running


def live(state: NodeState) -> str | None:
    return state.live


def live_port(state: NodeState) -> int:
    """The port the proxies' upstream names for this node: its live slot's (slot a's before any)."""
    return slot_port(state.live or DEFAULT_SLOT)


def idle(state: NodeState) -> str:
    """Where a deploy boots the next release: the slot that is not live."""
    return other_slot(state.live) if state.live else DEFAULT_SLOT


def serving(layout: Layout, state: NodeState) -> str | None:
    """The release the live slot's gunicorn serves (None: no live slot, or its gunicorn is down)."""
    if state.live is None or not running(layout, state, state.live):
        return None
    return state.slots.get(state.live)


def warm(layout: Layout, state: NodeState, release: str) -> str | None:
    """A slot, not the live one, whose gunicorn runs `release`: switching to it boots nothing."""
    for slot in SLOTS:
        if slot != state.live and state.slots.get(slot) == release and running(layout, state, slot):
            return slot
    return None
