"""``slmops models pull | list | remove | verify``: the local model store (and, with
``verify --published NAME``, the integrity of a published model's versions)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmops import model_store
from slmops.artifacts import models_dir
from slmops.commands import log_to_stderr


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="provision and inspect local base models",
        description="Bundled base models are converted into standard Hugging Face folders "
        "under $SLMOPS_HOME/models (default .slmops/models in the project).",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    pull = actions.add_parser("pull", help="provision a bundled model (idempotent)")
    pull.add_argument("alias", choices=sorted(model_store.BUNDLED_MODELS))
    pull.add_argument("--force", action="store_true", help="re-make it even when intact")
    pull.add_argument("--quiet", "-q", action="store_true", help="print nothing when present")
    pull.set_defaults(func=_pull)

    listing = actions.add_parser("list", help="show stored and bundled models")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_list)

    drop = actions.add_parser("remove", help="delete a stored model folder")
    drop.add_argument("name")
    drop.set_defaults(func=_remove)

    check = actions.add_parser(
        "verify",
        help="re-hash every stored file against its manifest (base models, or with "
        "--published a published model's versions)",
    )
    check.add_argument(
        "--published",
        metavar="NAME",
        help="verify the published model NAME (ARTIFACTS/models/NAME) instead of base models",
    )
    check.add_argument("--version", help="only this version of the published model")
    check.add_argument(
        "--artifacts_root",
        type=Path,
        help="artifacts root (default: $SLMOPS_ARTIFACTS_ROOT, else SLMOPS_HOME/artifacts)",
    )
    check.set_defaults(func=_verify)


def _pull(args: argparse.Namespace) -> int:
    result = model_store.pull(args.alias, force=args.force, log=log_to_stderr)
    if result.action != "present" or not args.quiet:
        print(f"{result.alias}: {result.action} at {result.path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    stored = model_store.list_models()
    if args.json:
        rows = [
            {
                "name": m.name,
                "path": str(m.path),
                "ok": m.ok,
                "problems": m.problems,
                "size_bytes": m.size_bytes,
                "source": m.source,
            }
            for m in stored
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"models directory: {models_dir()}")
    if not stored:
        print("  (empty)")
    for m in stored:
        state = "ok" if m.ok else "DAMAGED: " + "; ".join(m.problems)
        print(f"  {m.name:<28} {m.size_bytes / 1e6:8.1f} MB  {state}  ({m.path})")
    present = {m.name for m in stored}
    missing = [a for a in sorted(model_store.BUNDLED_MODELS) if a not in present]
    for alias in missing:
        print(f"  {alias:<28} {'':>11}  not pulled (slmops models pull {alias})")
    return 0


def _remove(args: argparse.Namespace) -> int:
    print(f"removed {model_store.remove(args.name)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.published:
        return _verify_published(args)
    stored = model_store.list_models(full=True)
    damaged = [m for m in stored if not m.ok]
    for m in stored:
        print(f"{m.name}: {'ok' if m.ok else '; '.join(m.problems)}")
    return 1 if damaged else 0


def _verify_published(args: argparse.Namespace) -> int:
    """Each version of a published model against its manifest's sha256s; exit 1 naming
    every missing, changed or added file."""
    from slmops.errors import ConfigError
    from slmops.layout import ModelStore
    from slmops.pipeline import locations, model_versions

    root = locations.artifacts_root(str(args.artifacts_root) if args.artifacts_root else None)
    store = ModelStore(locations.models_root(root))
    folder = store.versions(args.published)
    names = (
        [args.version]
        if args.version
        else sorted(
            entry.name
            for entry in (folder.iterdir() if folder.is_dir() else ())
            if entry.is_dir() and not entry.name.startswith(".")
        )
    )
    missing = [n for n in names if not store.version(args.published, n).is_dir()]
    if not names or missing:
        raise ConfigError(
            f"--published {args.published}: no version {', '.join(missing) or ''} under "
            f"{folder}; check the name (omit --version to verify every version)"
        )
    damaged = 0
    for name in names:
        version = store.version(args.published, name)
        if not model_versions.has_checksums(version):
            print(
                f"{args.published} {name}: not checked (published by an older slmops, its "
                "manifest records no checksums; publish the run again to record them)"
            )
            continue
        problems = model_versions.verify(version)
        damaged += bool(problems)
        print(f"{args.published} {name}: {'ok' if not problems else 'DAMAGED'}")
        for problem in problems:
            print(f"  {problem}")
    return 1 if damaged else 0
