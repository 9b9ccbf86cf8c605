#!/usr/bin/env bash
# Rebuilds pretrained/cmcr-dns-small: trains CMCR-Net (small configuration)
# with dynamic mixing on real speech and noise, without CR (with the offline
# Resemblyzer teacher CR lowered every score: benchmarks/README.md, the
# ablation), validating on the real p287 pairs, exports the last checkpoint
# with its model card, scores it on the development pairs and draws the
# spectrogram picture. The arguments are those of the ablation run no_cr/3
# (benchmarks/ablation.sh), the seed the p287 pairs chose of three.
#
#   bash pretrained/make_cmcr_dns_small.sh /path/to/trainsrc /path/to/devdata
#
# trainsrc holds speech/<corpus>/<speaker>/*.wav and noise/**/*.wav;
# devdata holds pair sets with clean/ and noisy/ folders. Extra arguments
# go to train.py (the last value of an option given twice wins).
set -euo pipefail
trainsrc=$(realpath "$1")
devdata=$(realpath "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
recipe=$root/recipes/VoiceBank/enhance/CMCRNet
run=$recipe/results/cmcr_dns_small/3

(cd "$recipe" && OMP_NUM_THREADS=1 "$python" train.py \
    hparams/dynamic_mixing.yaml --data_folder="$trainsrc" \
    --valid_pairs="$devdata/vbd_train_p287" --dm_seed=4234 --seed=3 \
    --cr_weight=0.0 --number_of_epochs=20 --dm_valid_mixtures=30 \
    --valid_metrics_subset=30 --dm_test_mixtures=30 \
    --ckpt_interval_minutes=5 --test_checkpoint=last "${@:3}")

bash "$root/pretrained/publish.sh" cmcr-dns-small "$run" "$devdata" --last
