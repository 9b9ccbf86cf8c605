#!/usr/bin/env bash
# The CMCR-Net ablation at CPU scale: the small dynamic-mixing configuration
# (hparams/dynamic_mixing.yaml with today's cmcr.yaml loss: compressed
# spectra, the last step's weights; Resemblyzer teacher) trained for the same
# number of steps as
#   full            CMCR-Net (collaboration module + CR, weight 0.1)
#   no_cr           without contrastive regularization (cr_weight 0)
#   no_cm           without the collaboration module (num_modules 0)
#   no_cr_no_cm     without either: what the module adds when CR is off
#   random_teacher  CR with a randomly initialised teacher
#   stream          the stream-contrast term on (stream_weight 0.1)
#   cr_0.03         CR weight 0.03
#   cr_0.3          CR weight 0.3
# with several training seeds each (the data split and the fixed validation
# and test mixtures stay those of dm_seed), then exports every run's last
# checkpoint so that benchmarks/quality.py can score it:
#
#   bash benchmarks/ablation.sh /path/to/trainsrc [jobs] [seeds...]
#
# Runs go to RUNS/<variant>/<seed> (RUNS defaults to the recipe's
# results/ablation), `jobs` at a time, one thread each, all variants of one
# seed before the next seed. Each run resumes if interrupted; finished runs
# are skipped. EPOCHS overrides the 20 epochs, VALID_PAIRS validates on a
# folder of real pairs (clean/, noisy/) instead of generated mixtures,
# VARIANTS picks variants (space-separated), PYTHON the interpreter
# (default: the repository's .venv/bin/python).
set -euo pipefail
usage() {
    echo "usage: bash benchmarks/ablation.sh TRAINSRC [JOBS] [SEEDS...]"
    echo "TRAINSRC holds speech/ and noise/ (see hparams/dynamic_mixing.yaml);"
    echo "JOBS runs at a time (default 2); SEEDS default to 1 2 3."
    echo "Environment: EPOCHS (20), RUNS, VALID_PAIRS, VARIANTS, PYTHON."
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
[ ${#seeds[@]} -eq 0 ] && seeds=(1 2 3)
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
epochs=${EPOCHS:-20}
runs=$(realpath -m "${RUNS:-$recipe/results/ablation}")
valid_args=()
if [ -n "${VALID_PAIRS:-}" ]; then
    if [ ! -d "$VALID_PAIRS/noisy" ]; then
        echo "ablation.sh: VALID_PAIRS=$VALID_PAIRS: no noisy/ folder" >&2
        exit 2
    fi
    valid_args=(--valid_pairs="$(realpath "$VALID_PAIRS")")
fi

declare -A variant_args=(
    [full]=""
    [no_cr]="--cr_weight=0.0"
    [no_cm]="--num_modules=0"
    [no_cr_no_cm]="--cr_weight=0.0 --num_modules=0"
    [random_teacher]="--teacher_pretrained=False"
    [stream]="--stream_weight=0.1"
    [cr_0.03]="--cr_weight=0.03"
    [cr_0.3]="--cr_weight=0.3"
)
read -r -a variants <<<"${VARIANTS:-full no_cr no_cm no_cr_no_cm random_teacher stream cr_0.03 cr_0.3}"
for variant in "${variants[@]}"; do
    if [ -z "${variant_args[$variant]+set}" ]; then
        echo "ablation.sh: unknown variant '$variant' (known:" \
            "${!variant_args[*]})" >&2
        exit 2
    fi
done

train_one() {
    local variant=$1 seed=$2
    local run=$runs/$variant/$seed
    if [ -f "$run/exported/enhance_model.ckpt" ]; then
        echo "done already: $run"
        return
    fi
    mkdir -p "$run"
    # shellcheck disable=SC2086
    (cd "$recipe" && OMP_NUM_THREADS=1 "$python" train.py \
        hparams/dynamic_mixing.yaml --data_folder="$trainsrc" \
        --output_folder="$run" --seed="$seed" --dm_seed=4234 \
        --number_of_epochs="$epochs" --dm_valid_mixtures=30 \
        --valid_metrics_subset=30 --dm_test_mixtures=30 \
        --ckpt_interval_minutes=5 --test_checkpoint=last \
        "${valid_args[@]}" ${variant_args[$variant]} \
        >>"$run/stdout.txt" 2>&1) || {
        echo "failed: $run (see its stdout.txt; rerun to resume)"
        return 1
    }
    "$python" -m speechbrain_cmcr.export "$run" "$run/exported" --last
    echo "finished: $run"
}
export recipe trainsrc python epochs runs

for seed in "${seeds[@]}"; do
    for variant in "${variants[@]}"; do
        echo "$variant $seed"
    done
done | xargs -P "$jobs" -L 1 bash -c "$(declare -p variant_args valid_args); $(declare -f train_one); train_one \"\$0\" \"\$1\""
