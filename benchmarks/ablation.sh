#!/usr/bin/env bash
# The CMCR-Net ablation at CPU scale: the small dynamic-mixing configuration
# (hparams/dynamic_mixing.yaml, Resemblyzer teacher) trained for the same
# number of steps as
#   full            CMCR-Net (collaboration module + CR)
#   no_cr           without contrastive regularization (cr_weight 0)
#   no_cm           without the collaboration module (num_modules 0)
#   random_teacher  CR with a randomly initialised teacher
# with several training seeds each (the data split and the fixed validation
# and test mixtures stay those of dm_seed), then exports every run so that
# benchmarks/quality.py can score it:
#
#   bash benchmarks/ablation.sh /path/to/trainsrc [jobs] [seeds...]
#
# Runs go to recipes/VoiceBank/enhance/CMCRNet/results/ablation/<variant>/
# <seed>, `jobs` at a time, one thread each. Each run resumes if interrupted;
# finished runs are skipped. EPOCHS overrides the 10 epochs, PYTHON the
# interpreter (default: the repository's .venv/bin/python).
set -euo pipefail
usage() {
    echo "usage: bash benchmarks/ablation.sh TRAINSRC [JOBS] [SEEDS...]"
    echo "TRAINSRC holds speech/ and noise/ (see hparams/dynamic_mixing.yaml);"
    echo "JOBS runs at a time (default 2); SEEDS default to 1 2."
}
if [ $# -eq 0 ]; then
    usage >&2
    exit 2
fi
case $1 in
    -h | --help)
        usage
        exit 0
        ;;
esac
if [ ! -d "$1" ]; then
    echo "ablation.sh: $1: no such folder" >&2
    usage >&2
    exit 2
fi
trainsrc=$(realpath "$1")
jobs=${2:-2}
seeds=("${@:3}")
[ ${#seeds[@]} -eq 0 ] && seeds=(1 2)
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
    echo "ablation.sh: JOBS must be a positive number, got '$jobs'" >&2
    exit 2
fi
if ! command -v "$python" >/dev/null; then
    echo "ablation.sh: no python at $python; install the .venv (see README)" \
        "or set PYTHON" >&2
    exit 2
fi
recipe=$root/recipes/VoiceBank/enhance/CMCRNet
epochs=${EPOCHS:-10}

declare -A variant_args=(
    [full]=""
    [no_cr]="--cr_weight=0.0"
    [no_cm]="--num_modules=0"
    [random_teacher]="--teacher_pretrained=False"
)

train_one() {
    local variant=$1 seed=$2
    local run=results/ablation/$variant/$seed
    if [ -f "$recipe/$run/exported/enhance_model.ckpt" ]; then
        echo "done already: $run"
        return
    fi
    mkdir -p "$recipe/$run"
    # shellcheck disable=SC2086
    (cd "$recipe" && OMP_NUM_THREADS=1 "$python" train.py \
        hparams/dynamic_mixing.yaml --data_folder="$trainsrc" \
        --output_folder="$run" --seed="$seed" --dm_seed=4234 \
        --number_of_epochs="$epochs" --dm_valid_mixtures=30 \
        --valid_metrics_subset=30 --dm_test_mixtures=30 \
        --ckpt_interval_minutes=5 \
        ${variant_args[$variant]} >"$recipe/$run/stdout.txt" 2>&1) || {
        echo "failed: $run (see its stdout.txt; rerun to resume)"
        return 1
    }
    "$python" -m speechbrain_cmcr.export "$recipe/$run" "$recipe/$run/exported"
    echo "finished: $run"
}
export recipe trainsrc python epochs

for seed in "${seeds[@]}"; do
    for variant in full no_cr no_cm random_teacher; do
        echo "$variant $seed"
    done
done | xargs -P "$jobs" -L 1 bash -c "$(declare -p variant_args); $(declare -f train_one); train_one \"\$0\" \"\$1\""
