"""The finished trials of a hyperparameter search: which one won (``best_trial``) and
the report's table of them all (``trials_table``)."""

from __future__ import annotations

import math
from typing import Any

from slmops.errors import SearchError


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


def best_trial(results: list[dict], metric: str, *, lower_is_better: bool = False) -> int:
    """The ``index`` of the best finished trial; ties go to the lower eval_loss, then index."""
    usable = [
        r for r in results if r.get("status") == "ok" and _number(r.get("metric")) is not None
    ]
    if not usable:
        failed = sum(r.get("status") != "ok" for r in results)
        raise SearchError(
            f"no trial finished with {metric} measured: {failed} of {len(results)} failed and "
            f"{len(results) - failed} reported none; see each trial's error in the report"
        )
    sign = 1 if lower_is_better else -1

    def rank(result: dict) -> tuple:
        loss = _number(result.get("eval_loss"))
        return (sign * result["metric"], math.inf if loss is None else loss, result["index"])

    return min(usable, key=rank)["index"]


def _cell(value: Any, spec: str = "g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def trials_table(
    results: list[dict], metric: str, *, lower_is_better: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (strings, by trial) for the report; the best trial has ``*``."""
    params = list(dict.fromkeys(name for r in results for name in r.get("params", {})))
    try:
        best = best_trial(results, metric, lower_is_better=lower_is_better)
    except SearchError:
        best = None
    headers = ["trial", *params, metric, "eval_loss", "status", "best"]
    rows = []
    for r in sorted(results, key=lambda r: r["index"]):
        status = r.get("status", "failed")
        if status != "ok" and r.get("error"):
            status = f"{status}: {str(r['error']).splitlines()[0][:80]}"
        rows.append(
            [
                str(r["index"]),
                *(_cell(r.get("params", {}).get(name)) for name in params),
                _cell(r.get("metric"), ".4f"),
                _cell(r.get("eval_loss"), ".4f"),
                status,
                "*" if r["index"] == best else "",
            ]
        )
    return headers, rows
