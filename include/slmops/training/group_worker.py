"""One training process of a multi-process run: ``python -m slmops.training.group_worker
GROUP_JSON``, started by torchrun (see ``slmops.training.group``), never by hand.

Each process checks the settings and data itself, trains its share of every batch, and
tags its lines with its rank; rank 0 alone writes the outputs. A refusal is recorded for
the launcher, which raises it as the same error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from slmops.errors import SlmopsError
from slmops.gc_scope import collect_less_often
from slmops.training.config import FinetuneConfig
from slmops.training.group import die_with_parent, record_refusal
from slmops.training.run import train_in_group


def main(argv: list[str]) -> int:
    collect_less_often()
    die_with_parent()  # torchrun killed -> this process goes too
    settings = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    rank = int(os.environ.get("RANK", "0"))

    def log(line: str) -> None:
        # One write per line: processes share the pipe, and writes this small are atomic.
        sys.stdout.write(f"[rank {rank}] {line}\n")
        sys.stdout.flush()

    config = FinetuneConfig.model_validate(settings["config"])
    resume_from = Path(settings["resume_from"]) if settings["resume_from"] else None
    try:
        train_in_group(config, resume_from=resume_from, log=log)
    except SlmopsError as exc:
        log(f"stopped: {exc}")
        record_refusal(config.folder.group_error, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
