#!/usr/bin/env bash
# Online fine-tuning demo (CartPole-v1), the input of the README's "Online fine-tuning" section:
# collect weak demonstrations (capped expert 50%, random 50%), train the spiking DT offline on
# them (configs/cartpole-weak.toml), evaluate it, fine-tune it online with REINFORCE, evaluate
# the result. Everything lands under ${1:-runs/results/finetune}/cartpole/:
#     datasets/  offline/  offline.json  finetune/ (finetune.json, learning_curve.png, checkpoint/)
#     finetuned.json
# then `make results` (python scripts/results.py) renders it. Re-running reuses what is finished:
# collect --exist-ok reuses the dataset, train resumes or leaves a finished run alone, finetune is
# skipped once its checkpoint exists (an interrupted one resumes), and an evaluation is skipped
# while its JSON is newer than the checkpoint it scores.
set -euo pipefail
out="${1:-runs/results/finetune}/cartpole"
sm=".venv/bin/spikingmind"
export MINARI_DATASETS_PATH="$out/datasets"
mkdir -p "$out"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$(date +%s)

# evaluate CHECKPOINT JSON: 20 unseen seeds, unless JSON is already newer than the checkpoint
evaluate() {
  if [[ -f "$2" && "$2" -nt "$1/checkpoint.json" ]]; then
    echo "$2 is up to date"
  else
    $sm evaluate "$1" --episodes 20 --json "$2" --force
  fi
}

step "1/5 collect 60 weak CartPole-v1 episodes (capped expert 50%, random 50%)"
$sm collect --env CartPole-v1 --episodes 60 --mix capped=0.5,random=0.5 --seed 0 \
    --dataset-id cartpole-weak-v0 --exist-ok

step "2/5 train the spiking DT offline on them"
$sm train --env CartPole-v1 --model snn --config configs/cartpole-weak.toml --dataset cartpole-weak-v0 \
    --out "$out/offline"

step "3/5 evaluate the offline checkpoint on 20 unseen seeds"
evaluate "$out/offline/checkpoint" "$out/offline.json"

step "4/5 fine-tune online with REINFORCE (3200 episodes)"
if [[ -d "$out/finetune/checkpoint" ]]; then
  echo "$out/finetune/checkpoint exists: fine-tuning finished"
else
  $sm finetune "$out/offline/checkpoint" --algo reinforce --episodes 3200 --batch-episodes 16 --lr 2e-3 \
      --temperature 0.5 --eval-every 5 --eval-episodes 10 --out "$out/finetune"
fi

step "5/5 evaluate the fine-tuned checkpoint on the same 20 unseen seeds"
evaluate "$out/finetune/checkpoint" "$out/finetuned.json"

printf '\n\033[1mfine-tuning demo finished in %ss; results:\033[0m\n' "$(( $(date +%s) - start ))"
printf '  %s\n' "$out/offline.json" "$out/finetuned.json" "$out/finetune/learning_curve.png"
