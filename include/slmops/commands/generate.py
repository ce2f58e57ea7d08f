"""``slmops generate``: greedy completion from any model slmops can resolve."""

from __future__ import annotations

import argparse
from pathlib import Path

from slmops.commands import log_to_stderr
from slmops.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="greedy completion of a prompt (a quick check of a model)",
        description="Resolves the model like every stage does (bundled alias, local "
        "folder or hub id) and prints the greedy completion of each --prompt. An ONNX "
        "folder written by `slmops auto-opt` or `slmops generate-adapter` runs in "
        "onnxruntime(-genai); --adapter picks the adapter of a multi-adapter folder.",
    )
    parser.add_argument(
        "-m",
        "--model_name_or_path",
        required=True,
        help="bundled alias, local Hugging Face folder, hub id, or an exported ONNX folder",
    )
    parser.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument(
        "--no_chat_template",
        action="store_true",
        help="send the prompt as is instead of as a user turn of the chat template",
    )
    parser.add_argument("--system", help="system message of the chat template")
    parser.add_argument(
        "--adapter", help="the adapter to answer with (a `slmops generate-adapter` folder)"
    )
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from slmops.export.runners import is_exported_folder

    folder = Path(args.model_name_or_path)
    if is_exported_folder(folder):
        completions = _onnx_completions(folder, args)
    else:
        if args.adapter:
            raise ConfigError(
                "--adapter selects an adapter of an ONNX multi-adapter folder (built by "
                "`slmops generate-adapter`); for a PyTorch model merge it or evaluate it"
            )
        completions = _pytorch_completions(args)
    for completion in completions:
        print(completion)
    return 0


def _prompts(args: argparse.Namespace, tokenizer) -> list[str]:
    from slmops.inference import chat_prompt

    if args.no_chat_template:
        return list(args.prompt)
    return [chat_prompt(tokenizer, prompt, args.system) for prompt in args.prompt]


def _pytorch_completions(args: argparse.Namespace) -> list[str]:
    from slmops.inference import greedy_complete
    from slmops.models import load_causal_lm, load_tokenizer, resolve

    model_ref = resolve(args.model_name_or_path, log=log_to_stderr)
    tokenizer = load_tokenizer(model_ref, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(model_ref, trust_remote_code=args.trust_remote_code)
    prompts = _prompts(args, tokenizer)
    return greedy_complete(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens)


def _onnx_completions(folder: Path, args: argparse.Namespace) -> list[str]:
    from transformers import AutoTokenizer

    from slmops.export.multi_adapter import MANIFEST, open_multi_adapter
    from slmops.export.runners import encode_prompts, greedy_answers, open_exported
    from slmops.inference import decode_answers

    tokenizer = AutoTokenizer.from_pretrained(folder)  # the export keeps its tokenizer
    if (folder / MANIFEST).is_file():
        runner = open_multi_adapter(folder)
    elif args.adapter:
        raise ConfigError(f"--adapter: {folder} is not a multi-adapter folder (no {MANIFEST})")
    else:
        runner = open_exported(folder)
    prompt_ids = encode_prompts(tokenizer, _prompts(args, tokenizer))
    answers = greedy_answers(runner, prompt_ids, args.max_new_tokens, adapter=args.adapter)
    return decode_answers(tokenizer, answers)
