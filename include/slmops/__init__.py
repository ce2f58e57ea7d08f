"""slmops: fine-tune, gate and ONNX-optimize small language models.

The library is plain Python (no Airflow import anywhere under this package); the Airflow
operators in ``plugins/slmops_airflow`` and the DAGs in ``dags/`` wrap it.
"""

__version__ = "0.1.0"
