#!/usr/bin/env bash
# Rebuilds pretrained/cmcr-causal-small in two stages, with the ONNX
# graphs, then draws and scores it:
# 1. the causal small configuration fine-tuned for 10 epochs without CR
#    from the offline model of stage 1 of make_cmcr_dns_small.sh (run that
#    first: it leaves RUN/exported in
#    recipes/VoiceBank/enhance/CMCRNet/results/cmcr_dns_small/3), exported
#    at its best epoch on the p287 pairs;
# 2. that model fine-tuned for 10 epochs with BatchNorm frozen
#    (--freeze_batchnorm), lr 3e-4 to 3e-5 and the differentiable PESQ
#    term at weight 0.01 (--perceptual_weight; the recipe README, round of
#    2026-12-06), exported at its best epoch on the p287 pairs.
#
#   bash pretrained/make_cmcr_causal_small.sh TRAINSRC DEVDATA [train.py options]
#
# devdata holds pair sets with clean/ and noisy/ folders. Extra arguments
# go to train.py in both stages (the last value of an option given twice
# wins).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$root/recipes/VoiceBank/enhance/CMCRNet/results
python=${PYTHON:-$root/.venv/bin/python}
offline=$results/cmcr_dns_small/3/exported
run=$results/cmcr_causal_small/3

if [ ! -f "$offline/enhance_model.ckpt" ]; then
    echo "No offline model in $offline: run pretrained/make_cmcr_dns_small.sh first" >&2
    exit 1
fi
bash "$root/pretrained/train_small.sh" "$run" "$1" "$2" \
    --number_of_epochs=10 --causal=True --init_from="$offline" "${@:3}"
"$python" -m speechbrain_cmcr.export "$run" "$run/exported"
bash "$root/pretrained/train_small.sh" "${run}_frozen_bn" "$1" "$2" \
    --number_of_epochs=10 --causal=True --init_from="$run/exported" \
    --freeze_batchnorm=True --lr=0.0003 --lr_final=0.00003 \
    --perceptual_weight=0.01 "${@:3}"
bash "$root/pretrained/publish.sh" cmcr-causal-small "${run}_frozen_bn" "$2" \
    --onnx
