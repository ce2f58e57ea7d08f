#!/usr/bin/env bash
# The CUDA paths of multi-process training, on a worker with 2 or more GPUs, in one short
# run (a few minutes): QLoRA on 2 GPUs (each rank loads its own 4-bit base on its own GPU),
# FSDP with LoRA and with full fine-tuning, then weak scaling over the GPUs there are.
#
#   bash benchmarks/distributed_gpu_check.sh            # needs a CUDA torch build, make setup
#
# Each step prints the run's summary; the script stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
GPUS=$($PY -c 'import torch; print(torch.cuda.device_count())')
if [ "$GPUS" -lt 2 ]; then
  echo "needs 2 or more CUDA GPUs; this machine has $GPUS" >&2
  exit 2
fi
OUT=$(mktemp -d -t slmops-gpu-group-XXXX)
trap 'rm -rf "$OUT"' EXIT
COMMON=(--config include/configs/finetune/phrase_tones.yaml --device gpu --num_processes 2
        --max_steps 20 --eval_steps 10 --logging_steps 5 --per_device_train_batch_size 4)

echo "== QLoRA, 2 processes (NCCL)"
$PY -m slmops finetune "${COMMON[@]}" --method qlora -o "$OUT/qlora"
echo "== FSDP + LoRA, 2 processes"
$PY -m slmops finetune "${COMMON[@]}" --method lora --fsdp -o "$OUT/fsdp-lora"
echo "== FSDP + full fine-tuning, 2 processes"
$PY -m slmops finetune "${COMMON[@]}" --method full --fsdp --learning_rate 2e-5 \
  -o "$OUT/fsdp-full"
echo "== the merged FSDP model loads and generates"
$PY -m slmops generate -m "$OUT/fsdp-full/merged" --prompt "I love this!" --max_new_tokens 4
echo "== weak scaling over $GPUS GPUs"
COUNTS=$($PY -c "print(','.join(str(n) for n in (1, 2, 4, 8) if n <= $GPUS))")
$PY benchmarks/distributed_throughput.py --device gpu --processes "$COUNTS" --steps 30
