"""The admin password of `make airflow`: the user's, or a random one made on first start.

SimpleAuthManager reads user passwords from a JSON file ({"admin": "..."}). Airflow would
generate one itself, but world-readable; earlier versions of this project wrote
admin/admin. This module writes the file first, mode 0600, so Airflow keeps it as it is:

- SLMOPS_ADMIN_PASSWORD set: that password (the file is rewritten when it differs);
- otherwise the password already in the file is kept, unless it is the old `admin`;
- otherwise a random one is generated, and printed this once.

    python -m slmops_airflow.cluster.standalone_auth PASSWORDS_FILE
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "admin"
PASSWORD_VARIABLE = "SLMOPS_ADMIN_PASSWORD"
# What `make airflow` used to write: never kept, only used when the user asks for it.
OLD_DEFAULT = "admin"


@dataclass(frozen=True)
class AdminPassword:
    password: str
    source: str  # "generated", "given" (SLMOPS_ADMIN_PASSWORD) or "kept" (from the file)
    path: Path


def ensure_admin_password(path: Path, given: str | None = None) -> AdminPassword:
    """The admin password in ``path`` (mode 0600), made as the module docstring says."""
    path = Path(path)
    stored = _read(path)
    if given:
        if stored.get(USER) != given:
            _write_private(path, {**stored, USER: given})
        source, password = "given", given
    elif stored.get(USER) and stored[USER] != OLD_DEFAULT:
        source, password = "kept", stored[USER]
    else:
        password = secrets.token_urlsafe(16)
        _write_private(path, {**stored, USER: password})
        source = "generated"
    path.chmod(0o600)  # a file left by an older version may be world-readable
    return AdminPassword(password, source, path)


def _read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"error: {path} is not a readable JSON passwords file ({exc}); delete it and "
            f"start again to get a new admin password"
        ) from None
    if not isinstance(stored, dict):
        raise SystemExit(f"error: {path} must hold a JSON object of user -> password")
    return stored


def _write_private(path: Path, passwords: dict[str, str]) -> None:
    """Written to a 0600 temporary file beside ``path`` and renamed over it: never readable
    by others, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:  # mkstemp: mode 0600
            json.dump(passwords, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe(admin: AdminPassword) -> str:
    """What to tell the user: the password itself only when it was just generated."""
    if admin.source == "generated":
        return (
            f"Airflow login: user {USER}, password {admin.password}\n"
            f"(generated now and shown only this once; kept in {admin.path}, readable by you "
            f"only. Set {PASSWORD_VARIABLE} to choose your own.)"
        )
    if admin.source == "given":
        return f"Airflow login: user {USER}, password from {PASSWORD_VARIABLE}"
    return f"Airflow login: user {USER}, password in {admin.path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slmops_airflow.cluster.standalone_auth")
    parser.add_argument("passwords_file", type=Path)
    args = parser.parse_args(argv)
    admin = ensure_admin_password(args.passwords_file, os.environ.get(PASSWORD_VARIABLE))
    print(describe(admin), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
