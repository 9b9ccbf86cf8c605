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
trainsrc=$(realpath "$1")
devdata=$(realpath "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
recipe=$root/recipes/VoiceBank/enhance/CMCRNet
run=$recipe/results/cmcr_causal_small/3

(cd "$recipe" && OMP_NUM_THREADS=1 "$python" train.py \
    hparams/dynamic_mixing.yaml --data_folder="$trainsrc" \
    --valid_pairs="$devdata/vbd_train_p287" --dm_seed=4234 --seed=3 \
    --cr_weight=0.0 --causal=True \
    --init_from="$root/pretrained/cmcr-dns-small" \
    --number_of_epochs=10 --dm_valid_mixtures=30 \
    --valid_metrics_subset=30 --dm_test_mixtures=30 \
    --ckpt_interval_minutes=5 --test_checkpoint=last \
    --output_folder="$run" "${@:3}")

bash "$root/pretrained/publish.sh" cmcr-causal-small "$run" "$devdata" --onnx
