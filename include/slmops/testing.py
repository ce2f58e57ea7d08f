"""Tiny offline models and datasets, so tests run in seconds without any download.

``build_tiny_llama`` writes a real Hugging Face folder (config.json, model.safetensors,
tokenizer.json with a ChatML chat template) holding a randomly initialised 2-layer Llama
and a byte-level BPE tokenizer trained on the fly. Every stage accepts it like any other
local model folder.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# The tone rows as a ChatML conversation: the answer (completion) is the {tone} label.
TONE_TEMPLATE = "<|im_start|>user\n{phrase}<|im_end|>\n<|im_start|>assistant\n{tone}"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TONES = ("joyful", "angry", "sad", "fearful", "surprised", "neutral")
_SUBJECTS = ("the train", "my sister", "the meeting", "our garden", "this song", "the report")
_ENDINGS = {
    "joyful": "made the whole day brighter",
    "angry": "was late again and nobody apologised",
    "sad": "reminded me of everyone who is gone",
    "fearful": "made strange noises in the dark",
    "surprised": "turned out completely different than expected",
    "neutral": "is scheduled for Tuesday at noon",
}
_QUESTIONS = (
    ("What does CPU stand for?", "Central processing unit."),
    ("What is a list in Python?", "An ordered, mutable sequence of items."),
    ("What does HTTP stand for?", "Hypertext transfer protocol."),
    ("What is a primary key?", "A column that uniquely identifies each row."),
    ("What is RAM?", "Memory that holds running programs and their data."),
    ("What is a compiler?", "A program that translates source code into machine code."),
)


def tone_rows(count: int = 60, *, seed: int = 0) -> list[dict[str, str]]:
    """Distinct ``{"phrase", "tone"}`` rows, balanced over ``TONES``."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        tone = TONES[i % len(TONES)]
        subject = _SUBJECTS[(i // len(TONES)) % len(_SUBJECTS)]
        rows.append({"phrase": f"{subject.capitalize()} {_ENDINGS[tone]} ({i}).", "tone": tone})
    rng.shuffle(rows)
    return rows


def shuffled_tone_rows(count: int = 24, *, seed: int = 0) -> list[dict[str, str]]:
    """Tone rows whose labels are dealt at random, so the phrase says nothing about its
    label: a model can only memorise them, and training long on them overfits."""
    rows = tone_rows(count, seed=seed)
    labels = [row["tone"] for row in rows]
    random.Random(seed + 1).shuffle(labels)
    return [{**row, "tone": label} for row, label in zip(rows, labels, strict=True)]


def instruction_rows(count: int = 24) -> list[dict[str, str]]:
    """Distinct ``{"input", "output"}`` rows of short technical Q&A."""
    rows = []
    for i in range(count):
        question, answer = _QUESTIONS[i % len(_QUESTIONS)]
        rows.append({"input": f"{question} (variant {i})", "output": answer})
    return rows


def _default_corpus() -> list[str]:
    texts = [f"{row['phrase']} {row['tone']}" for row in tone_rows(120)]
    texts += [f"{row['input']} {row['output']}" for row in instruction_rows(24)]
    texts += ["user assistant system", "The capital of France is Paris."]
    return texts


def build_tokenizer(corpus: Iterable[str] | None = None, *, vocab_size: int = 512):
    """A byte-level BPE tokenizer (any text encodes) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus or _default_corpus()), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_llama(
    out_dir: Path,
    *,
    tokenizer=None,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    initializer_range: float = 0.02,
    seed: int = 0,
) -> Path:
    """Save a random tiny Llama + tokenizer as a Hugging Face folder; returns the folder.

    A larger ``initializer_range`` (e.g. 0.3) gives peaked logits, which LoRA alone can
    steer: at the default the tied head is too small for an adapter to learn anything."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_gpt2(
    out_dir: Path, *, tokenizer=None, initializer_range: float = 0.02, seed: int = 0
) -> Path:
    """A random 2-layer GPT-2 + tokenizer folder: an architecture onnxruntime-genai's
    builder does not know (the torch.onnx fallback's case). A larger
    ``initializer_range`` (0.5) makes greedy answers vary token to token."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tokenizer or build_tokenizer()
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=len(tokenizer),
        n_positions=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# The reference guide's olive-config.yaml, word for word (its "Example 2").
GUIDE_OLIVE_CONFIG = """\
# olive-config.yaml
model:
  type: PyTorchModel
  config:
    model_path: "microsoft/DialoGPT-medium"
    task: "text-generation"

data_configs:
  - name: "custom_dataset"
    type: "HuggingfaceContainer"
    load_dataset_config:
      data_files: "path/to/your/dataset.json"
      split: "train"
    pre_process_data_config:
      text_template: "User: {input}\\nAssistant: {output}"

passes:
  lora:
    type: LoRA
    config:
      r: 16
      lora_alpha: 32
      target_modules: ["c_attn", "c_proj"]
      modules_to_save: ["ln_f", "lm_head"]
"""


def tiny_pipeline_data(data_root: Path, model: Path | None = None) -> Path:
    """A data root for slm_finetune tests: the tiny model (copied from ``model``, or built)
    as ``tiny/`` and 96 tone rows as ``tones.jsonl``."""
    import json
    import shutil

    data_root = Path(data_root)
    if model is None:
        build_tiny_llama(data_root / "tiny")
    else:
        shutil.copytree(model, data_root / "tiny")
    rows = "".join(json.dumps(row) + "\n" for row in tone_rows(96))
    (data_root / "tones.jsonl").write_text(rows, encoding="utf-8")
    return data_root


def tiny_pipeline_params(model_name: str, **overrides) -> dict:
    """slm_finetune params for ``tiny_pipeline_data``: full fine-tuning that reaches about
    0.83 accuracy in 60 steps, one cpu-fp32 export (its parity passes), no benchmark."""
    return {
        "model_name": model_name,
        "model_name_or_path": "tiny",
        "data_files": ["tones.jsonl"],
        "template_kind": "template",
        "text_template": TONE_TEMPLATE,
        "label_field": "tone",
        "suite": "default",
        "method": "full",
        "max_steps": 60,
        "eval_steps": 20,
        "learning_rate": 1e-2,
        "eval_fraction": 0.25,
        "per_device_train_batch_size": 4,
        "min_primary_metric": 0.5,
        "targets": ["cpu-fp32"],
        "benchmark": False,
        **overrides,
    }
