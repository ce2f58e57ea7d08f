"""``python -m slmops.export.builder_child ARGS``: onnxruntime-genai's model builder
(``python -m onnxruntime_genai.models.builder ARGS``) with onnxruntime's k-quant run in
cache-sized slices (``slmops.export.kquant``): the same files, written sooner."""

from __future__ import annotations

import runpy

from slmops.export import kquant
from slmops.gc_scope import collect_less_often

if __name__ == "__main__":
    collect_less_often()
    kquant.install()
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)
