"""Several LoRA adapters of one base, trained side by side and shipped as one ONNX model.

``plan`` gives each adapter (its own data, template and suite; the training settings
shared) a pipeline plan in RUN_DIR/adapters/NAME/. Once each is validated, trained and
evaluated, ``build`` exports the shared base with one ``.onnx_adapter`` file per adapter
into RUN_DIR/multi_adapter/TARGET/ and scores every adapter through that shared base on
its own eval rows. ``report`` shows each adapter's metrics side by side and publishes the
shared base with its adapters. ``slmops.pipeline.stages`` is the API over these.
"""

from slmops.pipeline.multi_adapter.plan import (
    AdapterSpec,
    MultiAdapterSettings,
    plan_adapters,
    read_multi_plan,
    split_conf,
)

__all__ = ["AdapterSpec", "MultiAdapterSettings", "plan_adapters", "read_multi_plan", "split_conf"]
