#!/usr/bin/env bash
# Rebuilds pretrained/cmcr-dns-small: trains CMCR-Net (small configuration)
# with dynamic mixing on real speech and noise and the offline Resemblyzer
# teacher, exports the best checkpoint with its model card, scores it on the
# development pairs and draws the spectrogram picture.
#
#   bash pretrained/make_cmcr_dns_small.sh /path/to/trainsrc /path/to/devdata
#
# trainsrc holds speech/<corpus>/<speaker>/*.wav and noise/**/*.wav;
# devdata holds pair sets with clean/ and noisy/ folders.
set -euo pipefail
trainsrc=$(realpath "$1")
devdata=$(realpath "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
recipe=$root/recipes/VoiceBank/enhance/CMCRNet
run=$recipe/results/cmcr_dns_small/4234
out=$root/pretrained/cmcr-dns-small

(cd "$recipe" && OMP_NUM_THREADS=1 "$python" train.py \
    hparams/dynamic_mixing.yaml --data_folder="$trainsrc" "${@:3}")

"$python" -m speechbrain_cmcr.export "$run" "$out" \
    --example "$devdata/vbd_train_p287/noisy/p287_004.wav" \
    --notes "$root/pretrained/cmcr-dns-small.card.md"
"$python" "$root/benchmarks/spectrograms.py" --model "$out" \
    --noisy "$devdata/vbd_train_p287/noisy/p287_004.wav" \
    --clean "$devdata/vbd_train_p287/clean/p287_004.wav" \
    --output "$out/spectrograms.png" \
    --title "VoiceBank+DEMAND p287_004 (speaker and noise unseen in training)"
"$python" "$root/benchmarks/quality.py" --model "$out" \
    --name cmcr-dns-small "$devdata/vbd_train_p287" "$devdata/dns2020" \
    "$devdata/crcnet"
