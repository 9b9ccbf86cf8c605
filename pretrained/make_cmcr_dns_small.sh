#!/usr/bin/env bash
# Rebuilds pretrained/cmcr-dns-small in two stages, scores it on the
# development pairs and draws the spectrogram picture:
# 1. CMCR-Net (small configuration) trained for 20 epochs with dynamic
#    mixing on real speech and noise, without CR (with the offline
#    Resemblyzer teacher CR lowered every score: benchmarks/README.md, the
#    ablation), validated on the real p287 pairs; the arguments are those
#    of the ablation run no_cr/3 (benchmarks/ablation.sh), the seed the
#    p287 pairs chose of three. Its last epoch is exported to
#    RUN/exported (the cmcr-dns-small shipped before 2026-12-02, and the
#    start of pretrained/make_cmcr_causal_small.sh);
# 2. that model fine-tuned for 10 epochs with BatchNorm frozen
#    (--freeze_batchnorm), lr 3e-4 to 3e-5 and the differentiable PESQ
#    term at weight 0.01 (--perceptual_weight; the recipe README, round of
#    2026-12-06), exported at its best epoch on the p287 pairs.
#
#   bash pretrained/make_cmcr_dns_small.sh /path/to/trainsrc /path/to/devdata
#
# trainsrc holds speech/<corpus>/<speaker>/*.wav and noise/**/*.wav;
# devdata holds pair sets with clean/ and noisy/ folders. Extra arguments
# go to train.py in both stages (the last value of an option given twice
# wins).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$root/recipes/VoiceBank/enhance/CMCRNet/results/cmcr_dns_small
python=${PYTHON:-$root/.venv/bin/python}

bash "$root/pretrained/train_small.sh" "$results/3" "$1" "$2" \
    --number_of_epochs=20 "${@:3}"
"$python" -m speechbrain_cmcr.export "$results/3" "$results/3/exported" --last
bash "$root/pretrained/train_small.sh" "$results/3_frozen_bn" "$1" "$2" \
    --number_of_epochs=10 --init_from="$results/3/exported" \
    --freeze_batchnorm=True --lr=0.0003 --lr_final=0.00003 \
    --perceptual_weight=0.01 "${@:3}"
bash "$root/pretrained/publish.sh" cmcr-dns-small "$results/3_frozen_bn" "$2"
