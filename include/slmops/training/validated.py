"""Train only on the data that were validated.

Every stage reads the data files itself, so a file can change between the validate stage
and training (a new upload, a second writer). The validation report records the
fingerprint of the examples it checked (``slmops.data.loading.fingerprint``); training
computes the same fingerprint of the examples it loaded and refuses to start when the two
differ, before its folder is touched.
"""

from __future__ import annotations

import json
from pathlib import Path

from slmops.errors import ConfigError, DataError
from slmops.layout import VALIDATION_REPORT


def report_file(path: Path) -> Path:
    """A validation.json, given itself or the folder ``slmops validate -o`` wrote it into."""
    path = Path(path)
    return path / VALIDATION_REPORT if path.is_dir() or not path.suffix else path


def validated_fingerprint(path: Path) -> str:
    """The fingerprint of the examples the report at ``path`` validated."""
    report = report_file(path)
    if not report.is_file():
        raise ConfigError(
            f"validation_path {report}: no validation report; run the validate stage "
            "(`slmops validate ... -o DIR`) on these data first"
        )
    try:
        fingerprint = json.loads(report.read_text(encoding="utf-8"))["data"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"validation_path {report}: not a validation report with a data fingerprint "
            f"({exc}); validate the data again"
        ) from None
    return str(fingerprint)


def require_validated(path: Path | None, fingerprint: str, sources: str) -> None:
    """Refuse (``DataError``) training data whose ``fingerprint`` is not the validated one;
    ``sources`` names the data as the user gave them (files or a dataset)."""
    if path is None:
        return
    validated = validated_fingerprint(path)
    if validated != fingerprint:
        raise DataError(
            f"the training data changed after validation: {sources} now give fingerprint "
            f"{fingerprint}, but {report_file(path)} validated fingerprint {validated}. "
            "Nothing was trained; validate the data as they are now (rerun the whole run) "
            "and keep the files unchanged until training has read them"
        )
