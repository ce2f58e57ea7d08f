"""The Great Expectations side of validation: checks as expectations, run, and read back.

Each ``Check`` is one GX expectation on the validated frame (or on one split of it) with
a function that explains its result in one line. ``run_checks`` runs every scope as one
GX validation in an ephemeral context and turns the results into ``CheckResult`` records
with up to five offending rows, each located by file and line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from slmops.data.config import DataConfig
from slmops.data.loading import location
from slmops.data.readers import LINE, SOURCE
from slmops.validation.suites import SuiteConfig

MAX_ROWS_SHOWN = 5

# Derived columns added to the validated frame.
SPLIT, TEXT, DUP_KEY, IN_TRAIN, TOKENS, CLASS_ROWS, FORMAT_ERROR = (
    "_split", "_text", "_dup_key", "_in_train", "_tokens", "_class_rows", "_format_error"
)  # fmt: skip


@dataclass
class Check:
    """One expectation of the suite, on the whole frame or on one split of it."""

    name: str
    scope: str  # "all", "train" or "eval"
    expectation: Any
    describe: Callable[[dict], str]
    column: str | None = None
    threshold: Any = None


@dataclass
class CheckResult:
    name: str
    scope: str
    expectation: str
    column: str | None
    passed: bool
    observed: Any
    threshold: Any
    explanation: str
    unexpected_count: int | None = None
    rows: list[dict] = field(default_factory=list)


def build_checks(
    suite: SuiteConfig,
    frame: pd.DataFrame,
    columns: list[str],
    label: str | None,
    data_config: DataConfig,
) -> list[Check]:
    """The suite's checks, in report order, for the columns the text format reads."""
    import great_expectations as gx

    expect = gx.expectations
    checks: list[Check] = []

    def add(name, scope, expectation, describe, column=None, threshold=None):
        checks.append(Check(name, scope, expectation, describe, column, threshold))

    required = [*columns, *suite.required_columns, *([label] if label else [])]
    required = list(dict.fromkeys(required))
    # A chat ``messages`` column holds lists: its rendered text is checked instead.
    text_columns = [c for c in columns if not _is_messages(c, data_config)]
    for column in required:
        add(
            f"column_present[{column}]",
            "all",
            expect.ExpectColumnToExist(column=column),
            lambda r, c=column: "present" if r["success"] else f"column {c!r} is missing",
            column,
        )
    present = [c for c in required if c in frame.columns and not _is_messages(c, data_config)]
    for column in present:
        add(
            f"not_null[{column}]",
            "all",
            expect.ExpectColumnValuesToNotBeNull(column=column),
            _rows_phrase("have no value"),
            column,
        )
        add(
            f"string_type[{column}]",
            "all",
            expect.ExpectColumnValuesToBeOfType(column=column, type_="str"),
            _type_phrase(_rows_phrase("hold a non-string value")),
            column,
        )
    for column in [c for c in present if c in text_columns]:
        bounds = suite.column_lengths.get(column, suite.text_length)
        add(
            f"not_blank[{column}]",
            "all",
            expect.ExpectColumnValuesToMatchRegex(column=column, regex=r"\S"),
            _rows_phrase("are empty or only whitespace"),
            column,
        )
        add(
            f"text_length[{column}]",
            "all",
            expect.ExpectColumnValueLengthsToBeBetween(
                column=column, min_value=bounds.min_chars, max_value=bounds.max_chars
            ),
            _rows_phrase(f"are outside {bounds.min_chars}-{bounds.max_chars} characters"),
            column,
            bounds.model_dump(),
        )
    add(
        "formattable",
        "all",
        expect.ExpectColumnValuesToBeNull(column=FORMAT_ERROR),
        _rows_phrase("cannot be formatted"),
        FORMAT_ERROR,
    )
    if label and label in frame.columns:
        checks.extend(_label_checks(suite, label))
    add(
        "no_duplicates",
        "all",
        expect.ExpectCompoundColumnsToBeUnique(
            column_list=[SPLIT, DUP_KEY], mostly=1.0 - suite.max_duplicate_fraction
        ),
        _rows_phrase(
            "repeat another row of their split (after case and space folding)",
            allowed=suite.max_duplicate_fraction,
        ),
        DUP_KEY,
        suite.max_duplicate_fraction,
    )
    if suite.check_leakage:
        add(
            "no_leakage",
            "eval",
            expect.ExpectColumnValuesToBeInSet(column=IN_TRAIN, value_set=[False]),
            _rows_phrase("of eval also appear in train"),
            IN_TRAIN,
        )
    longest = int(frame[TOKENS].max()) if len(frame) else 0
    add(
        "token_length",
        "all",
        expect.ExpectColumnValuesToBeBetween(
            column=TOKENS, max_value=suite.max_seq_len, mostly=1.0 - suite.max_truncated_fraction
        ),
        _rows_phrase(
            f"exceed max_seq_len {suite.max_seq_len} tokens and would be truncated "
            f"(longest: {longest} tokens)",
            allowed=suite.max_truncated_fraction,
        ),
        TOKENS,
        {"max_seq_len": suite.max_seq_len, "max_fraction": suite.max_truncated_fraction},
    )
    for scope, minimum in (("train", suite.min_rows), ("eval", suite.min_eval_rows)):
        add(
            f"min_rows[{scope}]",
            scope,
            expect.ExpectTableRowCountToBeBetween(min_value=minimum),
            lambda r, m=minimum: f"{r.get('observed_value')} rows (need at least {m})",
            None,
            minimum,
        )
    return checks


def _is_messages(column: str, data_config: DataConfig) -> bool:
    return data_config.use_chat_template and column == data_config.messages_field


def _label_checks(suite: SuiteConfig, label: str) -> list[Check]:
    import great_expectations as gx

    expect = gx.expectations
    checks = []
    if suite.labels is not None:
        allowed = ", ".join(suite.labels)
        checks.append(
            Check(
                f"labels_in_set[{label}]",
                "all",
                expect.ExpectColumnValuesToBeInSet(column=label, value_set=suite.labels),
                _rows_phrase(f"have a label outside {{{allowed}}}"),
                label,
                suite.labels,
            )
        )
        checks.append(
            Check(
                f"labels_all_present[{label}]",
                "train",
                expect.ExpectColumnDistinctValuesToContainSet(column=label, value_set=suite.labels),
                lambda r: (
                    "every label has training rows"
                    if r["success"]
                    else "no training rows for: "
                    + ", ".join(map(str, r.get("partial_missing_list", [])))
                ),
                label,
                suite.labels,
            )
        )
    checks.append(
        Check(
            f"min_rows_per_class[{label}]",
            "train",
            expect.ExpectColumnValuesToBeBetween(
                column=CLASS_ROWS, min_value=suite.min_rows_per_class
            ),
            _rows_phrase(
                f"belong to a label with fewer than {suite.min_rows_per_class} training rows"
            ),
            CLASS_ROWS,
            suite.min_rows_per_class,
        )
    )
    return checks


def _rows_phrase(what: str, *, allowed: float = 0.0) -> Callable[[dict], str]:
    def describe(result: dict) -> str:
        count = result.get("unexpected_count") or 0
        total = result.get("element_count") or 0
        share = f" ({count / total:.1%}, allowed {allowed:.1%})" if allowed and total else ""
        return f"{count} of {total} rows {what}{share}"

    return describe


def _type_phrase(per_row: Callable[[dict], str]) -> Callable[[dict], str]:
    """GX checks a column of one pandas dtype as a whole (its observed value is the dtype,
    with no row counts) and a mixed (object) column row by row."""

    def describe(result: dict) -> str:
        if "unexpected_count" in result:
            return per_row(result)
        dtype = result.get("observed_value")
        if result["success"]:
            return f"every value is text (column type {dtype})"
        return f"every value is of type {dtype}, not text: quote the values in the file"

    return describe


def run_checks(checks: list[Check], frame: pd.DataFrame) -> list[CheckResult]:
    """Run each scope's expectations as one GX validation; results in suite order."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("slmops").add_dataframe_asset("rows")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    results: dict[str, Any] = {}
    for scope in ("all", "train", "eval"):
        scoped = [check for check in checks if check.scope == scope]
        if not scoped:
            continue
        part = frame if scope == "all" else frame[frame[SPLIT] == scope].reset_index(drop=True)
        suite = context.suites.add(gx.ExpectationSuite(name=f"slmops-{scope}"))
        for check in scoped:
            check.expectation.meta = {"check": check.name}
            suite.add_expectation(check.expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"slmops-{scope}", data=batch, suite=suite)
        )
        outcome = definition.run(
            batch_parameters={"dataframe": part}, result_format={"result_format": "COMPLETE"}
        )
        for result in outcome.results:
            results[result.expectation_config.meta["check"]] = (result, part)
    return [_check_result(check, *results[check.name]) for check in checks]


def _check_result(check: Check, result, part: pd.DataFrame) -> CheckResult:
    details = dict(result.result or {})
    passed = bool(result.success)
    if result.exception_info and result.exception_info.get("raised_exception"):
        explanation = f"could not run: {result.exception_info.get('exception_message')}"
        passed = False
    else:
        details["success"] = passed
        explanation = check.describe(details)
    rows = []
    for index in (details.get("unexpected_index_list") or [])[:MAX_ROWS_SHOWN]:
        row = part.iloc[int(index)]
        value = row[check.column] if check.column in part.columns else None
        if check.column in (DUP_KEY, IN_TRAIN, TOKENS, CLASS_ROWS, FORMAT_ERROR):
            value = _shown_value(check, row)
        line = int(row[LINE])
        rows.append(
            {
                "location": location({SOURCE: row[SOURCE], LINE: line}),
                "file": row[SOURCE],
                "line": line,
                "split": row[SPLIT],
                "value": _clip(_plain(value)),
            }
        )
    observed = details.get("observed_value")
    if observed is None and "unexpected_count" in details:
        observed = {
            "unexpected_count": details["unexpected_count"],
            "rows": details.get("element_count"),
        }
    return CheckResult(
        name=check.name,
        scope=check.scope,
        expectation=result.expectation_config.type,
        column=check.column,
        passed=passed,
        observed=_plain(observed),
        threshold=check.threshold,
        explanation=explanation,
        unexpected_count=details.get("unexpected_count"),
        rows=rows,
    )


def _shown_value(check: Check, row: pd.Series) -> Any:
    """What to show for a row flagged on a derived column: the text, and the number."""
    text = row[TEXT]
    if check.column == TOKENS:
        return f"{row[TOKENS]} tokens: {text}"
    if check.column == FORMAT_ERROR:
        return row[FORMAT_ERROR]
    if check.column == CLASS_ROWS:
        return f"its label has {row[CLASS_ROWS]} training row(s): {text}"
    return text


def _clip(value: Any, limit: int = 120) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return f"{value[: limit - 3]}... ({len(value)} characters)"
    return value


def _plain(value: Any) -> Any:
    """JSON-safe copies of numpy / pandas values."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
