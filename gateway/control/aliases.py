"""What the registry's aliases ask of the rollout: pure (no I/O), run on every registry poll.

MLflow aliases are the gateway's API. The supervisor reads all of them in one call each
`supervisor.registry_poll_s`, also while a rollout runs, and `reconcile` says what a change
means:

- `challenger` set (no rollout running): start a rollout of that version;
- `challenger` moved to another version mid-rollout: the running one is `superseded`, then
  the new one starts;
- `challenger` deleted mid-rollout: the rollout is `aborted`;
- `champion` moved by hand: a running rollout is aborted (unless the new champion is the
  challenger itself: then it is promoted), and the new champion is loaded and served.

`Seen` remembers which alias values were already acted on, so a change is acted on once (a
version that failed to load is not retried every poll).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.control import rollout as ro
from model_registry.refs import CHALLENGER, CHAMPION


class Change(enum.StrEnum):
    START = "start"  # a new challenger: start its rollout
    SUPERSEDE = "supersede"  # the challenger alias moved mid-rollout
    ABORT = "abort"  # the challenger alias was deleted mid-rollout
    CHAMPION = "champion"  # the champion alias was moved by hand


@dataclass(frozen=True)
class AliasChange:
    change: Change
    version: str | None
    reason: str


@dataclass(frozen=True)
class Seen:
    """The alias values already acted on (or found in agreement with the served state)."""

    challenger: str | None = None
    champion: str | None = None

    @classmethod
    def of(cls, state: ro.RolloutState) -> Seen:
        """What a (re)started supervisor has, by construction, already acted on."""
        challenger = (state.challenger.version if state.challenger is not None
                      and state.phase in ro.ACTIVE and not state.replaces_champion else None)
        champion = state.champion.version if state.champion is not None else None
        return cls(challenger, champion)


def reconcile(state: ro.RolloutState, aliases: Mapping[str, str],
              seen: Seen) -> AliasChange | None:
    """The one change the registry asks for now (the champion's first), or None."""
    served = state.champion.version if state.champion is not None else None
    wanted_champion = aliases.get(CHAMPION)
    if (wanted_champion is not None and wanted_champion != served
            and wanted_champion != seen.champion):
        return AliasChange(Change.CHAMPION, wanted_champion,
                           f"champion alias moved by hand to version {wanted_champion}")
    wanted = aliases.get(CHALLENGER)
    if state.phase in ro.ACTIVE and not state.replaces_champion:
        running = state.challenger.version if state.challenger is not None else None
        if wanted is None:
            return AliasChange(Change.ABORT, None, "challenger alias deleted during the rollout")
        if wanted != running and wanted != seen.challenger:
            return AliasChange(Change.SUPERSEDE, wanted,
                               f"challenger alias moved to version {wanted} during the rollout")
        return None
    if state.phase in ro.ACTIVE:  # a champion set by hand is loading: the challenger waits
        return None
    if wanted is not None and wanted != seen.challenger and wanted != served:
        return AliasChange(Change.START, wanted, f"challenger alias set to version {wanted}")
    return None


def describe(state: ro.RolloutState, aliases: Mapping[str, str]) -> list[str]:
    """Where the registry and what is served disagree, in words (for status views)."""
    notes: list[str] = []
    served = state.champion.version if state.champion is not None else None
    champion = aliases.get(CHAMPION)
    if champion is None:
        notes.append(f"champion alias is not set; serving version {served}")
    elif champion != served:
        loading = (state.phase is ro.Phase.LOADING and state.replaces_champion
                   and state.challenger is not None and state.challenger.version == champion)
        notes.append(f"champion alias points at version {champion}, serving version {served}"
                     + ("; loading it" if loading else "; it did not load (see the verdict)"
                        if state.phase is ro.Phase.FAILED else ""))
    challenger = aliases.get(CHALLENGER)
    running = (state.challenger.version if state.challenger is not None
               and state.phase in ro.ACTIVE and not state.replaces_champion else None)
    if challenger is not None and challenger != running and challenger != served:
        notes.append(f"challenger alias points at version {challenger}, which is not being "
                     "rolled out (already judged, or waiting for the current rollout)")
    return notes
