"""The end-to-end pipeline behind the ``slm_finetune`` DAG, as plain Python.

``params`` is the trigger form's schema, ``locations`` confines file parameters and lays
out run folders, ``plan`` turns a form into each stage's settings, ``summary`` writes the
run's report and ``publish`` ships the result. Airflow operators call these; so can tests
and scripts, without Airflow.
"""
