from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guards.drift_report import TABLE_ID, render_drift_report, resample
from guards.window import ArmWindow
from tests.unit.guards.helpers import fill


def test_renders_html_with_the_drift_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = fill(ArmWindow(), 3000, rng), fill(ArmWindow(), 600, rng, out_shift=0.8)
    out = render_drift_report(a, b, tmp_path / "drift" / "report.html")
    assert out.exists()
    page = out.read_text(encoding="utf-8")
    assert f'id="{TABLE_ID}"' in page
    for column in ("output_value", "input_value", "latency_s"):
        assert column in page
    assert "ValueDrift" in page or "Drift" in page  # evidently's own drift widgets


def test_refuses_windows_without_common_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no column"):
        render_drift_report(ArmWindow(), ArmWindow(), tmp_path / "x.html")


def test_resample_keeps_proportions() -> None:
    x = resample(np.array([1.0, 2.0, 3.0]), [1, 2, 7], 100)
    assert x.size == 100
    assert (x == 3.0).sum() == 70 and (x == 2.0).sum() == 20
