"""slmops: fine-tune, gate and ONNX-optimize small language models.

The library is plain Python (no Airflow import anywhere under this package); the Airflow
operators in ``plugins/slmops_airflow`` and the DAGs in ``dags/`` wrap it.
"""

__version__ = "0.1.0"


def lazy_exports(package: str, entry_points: dict[str, str]):
    """A package ``__getattr__`` that imports an entry point's module on first use, so a
    package's curated names cost nothing to import until one is used (DAG files import
    light config modules of packages whose stages import torch)."""
    from importlib import import_module

    def __getattr__(name: str):
        if name not in entry_points:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(entry_points[name]), name)

    return __getattr__
