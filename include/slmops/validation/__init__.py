"""Dataset validation with Great Expectations: a suite of checks (schema, labels, lengths,
duplicates, leakage, token budget) run on the data as training formats it.

``run(data_config, suite)`` validates and writes validation.json; suites are
``SuiteConfig`` YAMLs (``load_suite`` by shipped name or path).
"""

from slmops import lazy_exports

_ENTRY_POINTS = {
    "run": "slmops.validation.runner",
    "ValidationReport": "slmops.validation.runner",
    "SuiteConfig": "slmops.validation.suites",
    "load_suite": "slmops.validation.suites",
}
__all__ = sorted(_ENTRY_POINTS)
__getattr__ = lazy_exports(__name__, _ENTRY_POINTS)
