#!/usr/bin/env bash
# The last steps of the make_*.sh scripts: exports a training run as
# pretrained/NAME with its model card (NAME.card.md), draws the spectrogram
# picture of p287_004 and scores the export on the development pairs.
#
#   bash pretrained/publish.sh NAME RUN DEVDATA [export options]
#
# Export options go to python -m speechbrain_cmcr.export (--last, --onnx).
set -euo pipefail
name=$1
run=$(realpath "$2")
devdata=$(realpath "$3")
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
example=$devdata/vbd_train_p287/noisy/p287_004.wav

# From the repository root, so that the card names pretrained/NAME.
cd "$root"
"$python" -m speechbrain_cmcr.export "$run" "pretrained/$name" "${@:4}" \
    --example "$example" --notes "pretrained/$name.card.md"
"$python" benchmarks/spectrograms.py --model "pretrained/$name" \
    --noisy "$example" --clean "$devdata/vbd_train_p287/clean/p287_004.wav" \
    --output "pretrained/$name/spectrograms.png" \
    --title "VoiceBank+DEMAND p287_004 (speaker and noise unseen in training)"
"$python" benchmarks/quality.py --model "$name=pretrained/$name" \
    "$devdata/vbd_test_extra" "$devdata/vbd_train_p287" "$devdata/dns2020" \
    "$devdata/crcnet"
