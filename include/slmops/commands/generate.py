"""``slmops generate``: greedy completion from any model slmops can resolve."""

from __future__ import annotations

import argparse

from slmops.commands import log_to_stderr


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="greedy completion of a prompt (a quick check of a model)",
        description="Resolves the model like every stage does (bundled alias, local "
        "folder or hub id) and prints the greedy completion of each --prompt.",
    )
    parser.add_argument(
        "-m",
        "--model_name_or_path",
        required=True,
        help="bundled alias, local Hugging Face folder or hub id",
    )
    parser.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument(
        "--no_chat_template",
        action="store_true",
        help="send the prompt as is instead of as a user turn of the chat template",
    )
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from slmops.inference import chat_prompt, greedy_complete
    from slmops.models import load_causal_lm, load_tokenizer, resolve

    model_ref = resolve(args.model_name_or_path, log=log_to_stderr)
    tokenizer = load_tokenizer(model_ref, trust_remote_code=args.trust_remote_code)
    model = load_causal_lm(model_ref, trust_remote_code=args.trust_remote_code)
    prompts = (
        args.prompt
        if args.no_chat_template
        else [chat_prompt(tokenizer, prompt) for prompt in args.prompt]
    )
    for completion in greedy_complete(
        model, tokenizer, prompts, max_new_tokens=args.max_new_tokens
    ):
        print(completion)
    return 0
