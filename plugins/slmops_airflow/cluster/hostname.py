"""The host name a task instance records (Airflow's ``core.hostname_callable``).

Several Celery workers on one machine share its host name, so a task's record would not
say which worker ran it; a worker started with SLMOPS_WORKER_NAME records
``NAME@host`` instead. Without it this is Airflow's default, the fully qualified name.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    host = socket.getfqdn()
    name = os.environ.get("SLMOPS_WORKER_NAME")
    return f"{name}@{host}" if name else host
