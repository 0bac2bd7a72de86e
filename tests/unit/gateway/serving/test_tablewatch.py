"""The table watcher's long poll: newer tables only, and a restarted supervisor noticed."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.serving.tablewatch import TableWatcher
from gateway.wire.routing import Mode, RoutingTable


def _table(version: int) -> RoutingTable:
    return RoutingTable(version=version, champion_slot="a", challenger_slot=None,
                        challenger_weight=0.0, mode=Mode.PINNED)


class _Method:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> Any:
        self.calls.append(args)

        async def answer() -> Any:
            if not self.answers:
                await asyncio.sleep(3600)
            item = self.answers.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item

        return answer()


class _Supervisor:
    def __init__(self, answers: list[Any]) -> None:
        self.wait_for_table = _Method(answers)


def test_a_new_supervisor_instance_is_reported_once_and_tables_only_move_forward() -> None:
    async def scenario() -> None:
        restarts: list[str | None] = []
        sup = _Supervisor([
            {**_table(2).to_dict(), "supervisor": "one"},
            {**_table(1).to_dict(), "supervisor": "one"},  # older: ignored
            RuntimeError("supervisor restarting"),
            {**_table(3).to_dict(), "supervisor": "two"},
        ])
        watcher = TableWatcher(sup, _table(1), on_new_supervisor=lambda: restarts.append(
            watcher.supervisor))
        watcher.start()
        for _ in range(300):
            if watcher.current.version == 3:
                break
            await asyncio.sleep(0.01)
        await watcher.stop()
        assert watcher.current.version == 3
        assert restarts == ["two"]  # the first instance seen is no restart
        # each poll names the instance it knows, so a restarted one answers at once
        assert [c[2] for c in sup.wait_for_table.calls[:2]] == [None, "one"]

    asyncio.run(scenario())
