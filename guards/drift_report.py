"""Render an evidently HTML data-drift report for a champion/challenger window pair.

Windows keep histograms and sketches, not raw values, so each arm is turned back into a
representative sample: every bin contributes its representative value (bin midpoint;
sketch bucket value for latency) as many times as its share of `max_rows` rows
(largest-remainder rounding, deterministic). The champion is evidently's "reference",
the challenger its "current". Evidently (imported lazily: it is slow to import) computes
its own PSI on those samples; our guard's PSI on the window bins is written into a small
static table at the top of the page, so the artifact shows exactly what the judge saw.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from guards.drift import grouped_psi
from guards.window import ArmWindow, WindowSpec

TABLE_ID = "gateway-drift-table"


def bin_representatives(edges: Sequence[float]) -> npt.NDArray[np.float64]:
    """One value per histogram bin: midpoints, and the outer edges for the open bins."""
    e = np.asarray(edges, dtype=np.float64)
    mids = (e[:-1] + e[1:]) / 2.0
    return np.concatenate(([e[0]], mids, [e[-1]]))


def resample(values: npt.NDArray[np.float64], counts: Sequence[int], rows: int) -> npt.NDArray[
        np.float64]:
    """`rows` values distributed over `values` in proportion to `counts`."""
    c = np.asarray(counts, dtype=np.float64)
    share = c / c.sum() * rows
    n = np.floor(share).astype(np.int64)
    short = rows - int(n.sum())
    if short > 0:
        n[np.argsort(-(share - n), kind="stable")[:short]] += 1
    return np.repeat(values, n)


def _latency_sample(w: ArmWindow, spec: WindowSpec, rows: int) -> npt.NDArray[np.float64]:
    buckets = w.latency_buckets()
    keys = sorted(buckets)
    vals = np.array([spec.latency_value(k) for k in keys])
    return resample(vals, [buckets[k] for k in keys], rows)


def _columns(champion: ArmWindow, challenger: ArmWindow, rows: int) -> dict[
        str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    spec = champion.spec
    cols = {}
    for name, edges, attr in (("output_value", spec.output_edges, "output_hist"),
                              ("input_value", spec.input_edges, "input_hist")):
        a, b = getattr(champion, attr), getattr(challenger, attr)
        if sum(a) and sum(b):
            reps = bin_representatives(edges)
            cols[name] = (resample(reps, a, rows), resample(reps, b, rows))
    if champion.n_latency() and challenger.n_latency():
        cols["latency_s"] = (_latency_sample(champion, spec, rows),
                             _latency_sample(challenger, spec, rows))
    return cols


def _guard_table(champion: ArmWindow, challenger: ArmWindow) -> str:
    rows = []
    for name, attr in (("output_value", "output_hist"), ("input_value", "input_hist")):
        a, b = getattr(champion, attr), getattr(challenger, attr)
        value = f"{grouped_psi(a, b, 10):.4f}" if sum(a) and sum(b) else "no data"
        rows.append(f"<tr><td>{name}</td><td>{sum(a)}</td><td>{sum(b)}</td>"
                    f"<td>{html.escape(value)}</td></tr>")
    return (f'<table id="{TABLE_ID}" border="1" style="margin:1em;font-family:sans-serif">'
            "<caption>champion-gateway drift table (PSI on window bins, champion = "
            "reference)</caption><tr><th>column</th><th>champion n</th><th>challenger n</th>"
            f"<th>PSI</th></tr>{''.join(rows)}</table>")


def render_drift_report(
    champion: ArmWindow, challenger: ArmWindow, path: str | Path, max_rows: int = 2000
) -> Path:
    """Write an HTML drift report (evidently DataDriftPreset, PSI) and return its path.

    Raises ValueError when the windows share no column with data in both arms.
    """
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if champion.spec != challenger.spec:
        raise ValueError("champion and challenger windows have different WindowSpecs")
    cols = _columns(champion, challenger, max_rows)
    if not cols:
        raise ValueError("no column has data in both windows: nothing to compare")
    ref = pd.DataFrame({k: v[0] for k, v in cols.items()})
    cur = pd.DataFrame({k: v[1] for k, v in cols.items()})
    definition = DataDefinition(numerical_columns=list(cols))
    snapshot = Report([DataDriftPreset(method="psi")]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out))
    page = out.read_text(encoding="utf-8")
    table = _guard_table(champion, challenger)
    at = page.find("<body>")
    page = page[: at + 6] + table + page[at + 6 :] if at >= 0 else table + page
    out.write_text(page, encoding="utf-8")
    return out
