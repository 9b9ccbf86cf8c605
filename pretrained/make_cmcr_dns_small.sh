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
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/recipes/VoiceBank/enhance/CMCRNet/results/cmcr_dns_small/3

bash "$root/pretrained/train_small.sh" "$run" "$1" "$2" \
    --number_of_epochs=20 "${@:3}"
bash "$root/pretrained/publish.sh" cmcr-dns-small "$run" "$2" --last
