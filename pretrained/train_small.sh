#!/usr/bin/env bash
# The training step shared by the make scripts of the shipped small models:
# hparams/dynamic_mixing.yaml on real speech and noise, without CR,
# validated on the real p287 pairs, seed 3 (the seed the p287 pairs chose
# of the ablation's three), one thread, tested at the last checkpoint.
#
#   bash pretrained/train_small.sh RUN TRAINSRC DEVDATA [train.py options]
#
# RUN is the output folder; the options (epochs, --causal, --init_from...)
# go to train.py after these (the last value of an option given twice wins).
set -euo pipefail
run=$(realpath -m "$1")
trainsrc=$(realpath "$2")
devdata=$(realpath "$3")
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cd "$root/recipes/VoiceBank/enhance/CMCRNet"
OMP_NUM_THREADS=1 "$python" train.py hparams/dynamic_mixing.yaml \
    --data_folder="$trainsrc" --valid_pairs="$devdata/vbd_train_p287" \
    --dm_seed=4234 --seed=3 --cr_weight=0.0 --dm_valid_mixtures=30 \
    --valid_metrics_subset=30 --dm_test_mixtures=30 \
    --ckpt_interval_minutes=5 --test_checkpoint=last \
    --output_folder="$run" "${@:4}"
