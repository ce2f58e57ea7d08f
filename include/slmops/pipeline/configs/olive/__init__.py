"""Microsoft Olive workflow configs (``olive run --config``) read as slm_finetune params.

``slmops run --config FILE`` takes an Olive config unchanged: ``from_olive`` maps its one
fine-tuning pass, that pass's data config and the input model onto ``PipelineParams``
fields, and says line by line what came from where and what was ignored. The reference
guide names GPT-2 modules (c_attn, c_proj, ln_f); ``map_module_names`` translates them to
the model at hand, whose names ``module_names`` reads from safetensors headers alone.

One module per Olive section: ``passes`` (the fine-tuning pass and its training_args),
``model``, ``data`` (data_configs), ``targets`` (ModelBuilder passes' precision);
``workflow`` walks a whole config through them and validates the result.
"""

from slmops.pipeline.configs.olive.workflow import OliveMapping, from_olive, is_olive_config

__all__ = ["OliveMapping", "from_olive", "is_olive_config"]
