"""The request ledger behind POST /v1/feedback: bounded by capacity and by time."""

from __future__ import annotations

from gateway.control.feedback import RequestLedger


def test_lookups_answer_ok_then_expired_then_unknown() -> None:
    ledger = RequestLedger(capacity=10, ttl_s=100.0)
    ledger.remember([("r1", "3")], now=0.0)
    assert ledger.lookup("r1", now=50.0) == ("ok", "3")
    assert ledger.lookup("r1", now=150.0) == ("expired", None)
    ledger.remember([("r2", "3")], now=150.0)  # r1 expired, kept for another ttl
    assert ledger.lookup("r1", now=150.0) == ("expired", None)
    ledger.remember([("r3", "3")], now=201.0)  # r1 is 2 ttl old: forgotten
    assert ledger.lookup("r1", now=201.0) == ("unknown", None)
    assert ledger.lookup("r2", now=201.0) == ("ok", "3")


def test_memory_is_bounded_by_capacity_and_by_traffic_times_ttl() -> None:
    ledger = RequestLedger(capacity=1000, ttl_s=10.0)
    for second in range(100):  # 5 ids a second for 100 s
        ledger.remember([(f"{second}-{i}", "1") for i in range(5)], now=float(second))
    assert len(ledger._seen) <= 5 * 21  # about 2 ttl of traffic, far under capacity
    small = RequestLedger(capacity=7, ttl_s=10**6)
    small.remember([(str(i), "1") for i in range(20)], now=0.0)
    assert len(small._seen) == 7 and small.lookup("19", 0.0) == ("ok", "1")
    assert small.lookup("0", 0.0) == ("unknown", None)
