"""Airflow operators for slmops, one module per pipeline stage.

Operators only store their arguments in ``__init__``; the work (and every heavy import)
happens in ``execute()``, which calls the plain-Python library in ``slmops``.
"""
