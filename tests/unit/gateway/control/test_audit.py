"""The append-only JSONL audit log, on real files."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest

from gateway.control.audit import AuditError, AuditLog, AuditRecord

VERDICT = {
    "state": "fail", "action": "rollback", "severity": "critical",
    "reasons": ["latency_p95: challenger p95 +62% vs champion"],
    "results": [{"guard": "latency_p95", "state": "fail", "value": 0.62, "threshold": 0.5,
                 "statistic": 9.1, "n_champion": 800, "n_challenger": 90,
                 "detail": "p95 210 ms vs 130 ms", "signal": True}],
    "catastrophic": False,
}


def record(event: str = "rolled_back", rollout_id: str | None = "r-1", **kw: object) -> AuditRecord:
    base: dict[str, object] = dict(
        time=1_700_000_000.25, event=event, actor="supervisor", model="fraud",
        rollout_id=rollout_id, phase_from="canary", phase_to="rolled_back",
        table_version_from=7, table_version_to=8, champion_version="6",
        challenger_version="7", reason="latency_p95 breached", verdict=VERDICT)
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


def test_append_read_round_trip(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "deep" / "er" / "audit.jsonl")  # parents are created
    records = [record("rollout_started", verdict=None, phase_from="idle", phase_to="loading",
                      table_version_from=None, table_version_to=None, reason=""),
               record(), record("promoted", rollout_id="r-2", actor="admin-api",
                                details={"weights": {"a": 100, "b": 0}})]
    for r in records:
        log.append(r)
    assert log.read() == records
    assert log.read("r-1") == records[:2]
    assert log.read("r-2") == records[2:]
    assert log.read("nope") == []
    lines = log.path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[1])["verdict"]["results"][0]["guard"] == "latency_p95"
    assert json.loads(lines[1])["timestamp"].startswith("2023-11-14T22:13:20.250")


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert AuditLog(tmp_path / "none.jsonl").read() == []


def test_non_finite_evidence_is_written_as_null(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(record(verdict={"state": "fail", "results": [{"value": float("nan")}]}))
    line = log.path.read_text()
    assert "NaN" not in line
    assert log.read()[0].verdict == {"state": "fail", "results": [{"value": None}]}


def test_concurrent_appends_keep_every_line_intact(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    big = {"state": "fail", "blob": "x" * 20_000}  # larger than any write buffer
    n_threads, per_thread = 8, 40
    barrier = threading.Barrier(n_threads)

    def writer(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            log.append(record(rollout_id=f"t{t}", reason=str(i), verdict=big))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = log.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == n_threads * per_thread + 1
    seen = {(d["rollout_id"], d["reason"]) for d in map(json.loads, lines[:-1])}
    assert seen == {(f"t{t}", str(i)) for t in range(n_threads) for i in range(per_thread)}
    for t in range(n_threads):  # per thread, in order
        assert [r.reason for r in log.read(f"t{t}")] == [str(i) for i in range(per_thread)]


def test_torn_last_line_is_skipped_and_never_corrupts_later_records(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    log.append(record("rollout_started"))
    log.append(record("step_advanced"))
    full = json.dumps(record("rolled_back").to_dict())
    with log.path.open("ab") as f:  # a crash halfway through a write
        f.write(full[: len(full) // 2].encode())
    with caplog.at_level(logging.WARNING, logger="champion_gateway.gateway.control.audit"):
        assert [r.event for r in log.read()] == ["rollout_started", "step_advanced"]
    assert "torn last line" in caplog.text
    log.append(record("rolled_back"))
    assert [r.event for r in log.read()] == ["rollout_started", "step_advanced", "rolled_back"]
    lines = log.path.read_text().split("\n")
    assert lines[2] == full[: len(full) // 2]  # the torn bytes are kept, on their own line


def test_file_only_ever_grows(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    before = b""
    for i in range(20):
        log.append(record(reason=f"step {i}"))
        after = log.path.read_bytes()
        assert after.startswith(before) and len(after) > len(before)
        before = after
    AuditLog(log.path).append(record(reason="reopened"))  # a new instance appends too
    assert log.path.read_bytes().startswith(before)
    assert len(log.read()) == 21


def test_append_async(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    asyncio.run(log.append_async(record()))
    assert log.read() == [record()]


def test_append_failure_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(AuditError, match=r"dir\.jsonl"):
        AuditLog(tmp_path / "dir.jsonl").append(record())


def test_from_dict_ignores_unknown_keys_and_rejects_missing_fields() -> None:
    data = record().to_dict() | {"future_field": 1}
    assert AuditRecord.from_dict(data) == record()
    minimal = AuditRecord.from_dict({"time": 1, "event": "paused", "actor": "cli",
                                     "model": "m"})
    assert minimal.rollout_id is None and minimal.reason == "" and minimal.verdict is None
    for missing in ("time", "event", "actor", "model"):
        broken = {k: v for k, v in record().to_dict().items() if k != missing}
        with pytest.raises(AuditError, match=missing):
            AuditRecord.from_dict(broken)
    with pytest.raises(AuditError, match="table_version_to"):
        AuditRecord.from_dict(record().to_dict() | {"table_version_to": "8"})

