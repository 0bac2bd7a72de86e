from __future__ import annotations

import numpy as np
import pytest

from guards.context import JudgeContext
from guards.results import Action, Severity, TriggerSpec


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def trigger(guard: str, threshold: float, **params: object) -> TriggerSpec:
    return TriggerSpec(guard, threshold, Severity.HIGH, Action.ROLLBACK, params)


CTX = JudgeContext()
ALPHA = 0.001
