"""The CeleryExecutor deployment of docker-compose.yaml as native processes, for machines
without Docker and for the tests: ``python -m slmops_airflow.cluster up|down|status``
(``make cluster`` / ``make cluster-stop``), and ``run -- CMD`` for ``make airflow``.

Nothing here imports Airflow: the components are Airflow's own CLI processes.
"""
