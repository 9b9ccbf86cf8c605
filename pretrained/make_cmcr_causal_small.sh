#!/usr/bin/env bash
# Rebuilds pretrained/cmcr-causal-small: the causal small configuration,
# fine-tuned without CR from pretrained/cmcr-dns-small's weights, exported
# at its best epoch on the p287 pairs with the ONNX graphs, then drawn and
# scored. From anywhere:
#
#   bash pretrained/make_cmcr_causal_small.sh TRAINSRC DEVDATA [train.py options]
#
# devdata holds pair sets with clean/ and noisy/ folders. Extra arguments
# go to train.py (the last value of an option given twice wins).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/recipes/VoiceBank/enhance/CMCRNet/results/cmcr_causal_small/3

bash "$root/pretrained/train_small.sh" "$run" "$1" "$2" \
    --number_of_epochs=10 --causal=True \
    --init_from="$root/pretrained/cmcr-dns-small" "${@:3}"
bash "$root/pretrained/publish.sh" cmcr-causal-small "$run" "$2" --onnx
