#!/usr/bin/env bash
# The recipe search of docs/results/cifar10-cpu (BUDGET.md): candidate recipes for the cifar10-cpu preset, each
# trained at 32 images/device on 45,000 training images and scored on the 5,000 held out of them (--val-split);
# the test set is not read. Resumable: rerunning skips finished candidates and continues unfinished ones.
# Usage: scripts/recipe_search.sh DATA_ROOT OUT [EPOCHS]
set -euo pipefail
root=${1:?data root (CIFAR-10 ImageFolder or torchvision files)}
out=${2:?output directory}
epochs=${3:-6}
py=${PYTHON:-.venv/bin/python}
common=(--dataset cifar10 --data-root "$root" --val-split 5000 --model resnet8 --width 1 --devices 4
        --batch-per-device 32 --epochs "$epochs" --schedule cosine --warmup-epochs "$(python3 -c "print($epochs*0.15)")"
        --weight-decay 5e-4 --channels-last --threads 1 --seeds 1 --quiet --no-report)
run() {  # name, then flags
  local name=$1; shift
  nice "$py" -m groupnorm repro "${common[@]}" "$@" --out "$out/$name"
}
run bn-zi-conv-lr05     --norms bn --zero-init-last on  --shortcut conv --base-lr 0.05
run gn4-zi-conv-lr05    --norms gn --group-size 4 --zero-init-last on  --shortcut conv --base-lr 0.05
run bn-nozi-conv-lr05   --norms bn --zero-init-last off --shortcut conv --base-lr 0.05
run gn4-nozi-conv-lr05  --norms gn --group-size 4 --zero-init-last off --shortcut conv --base-lr 0.05
run gn4-nozi-pad-lr05   --norms gn --group-size 4 --zero-init-last off --shortcut pad  --base-lr 0.05
run gn4-nozi-conv-lr10  --norms gn --group-size 4 --zero-init-last off --shortcut conv --base-lr 0.1
run gn4-nozi-conv-lr05-nodecaynorm --norms gn --group-size 4 --zero-init-last off --shortcut conv --base-lr 0.05 --no-decay-norm
run gnG8-nozi-conv-lr05 --norms gn --groups 8 --zero-init-last off --shortcut conv --base-lr 0.05
# second round, after the first showed zero-γ off, the conv shortcut, LR 0.1 and G=8 helping GN: BN at LR 0.1,
# and the two GN gains together (GN at 0.2 was stopped after 2 epochs for this one: 65.7, 58.4)
run bn-nozi-conv-lr10   --norms bn --zero-init-last off --shortcut conv --base-lr 0.1
run gnG8-nozi-conv-lr10 --norms gn --groups 8 --zero-init-last off --shortcut conv --base-lr 0.1
