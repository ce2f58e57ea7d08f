"""The end-to-end pipeline behind the DAGs, as plain Python.

``stages`` is the one API: every task of a run (prepare, validate, finetune, evaluate,
optimize, challenge, report, publish) and the run kinds built from them (HPO, several
adapters on one base); the Airflow operators, ``slmops run`` and ``slmops report`` call
only it. Behind it: ``params`` (the trigger form's schema), ``plan`` (a form turned into
each stage's settings), ``locations`` (confined files, run folders), ``summary`` and
``publish`` (one pipeline's report and published version), the run kinds ``champion``,
``hpo``, ``multi_adapter`` and ``data_watch``, ``local_run`` (``slmops run``), and
``configs`` (pipeline YAMLs and Olive-style configs as params).
"""
