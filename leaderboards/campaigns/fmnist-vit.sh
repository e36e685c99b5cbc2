#!/usr/bin/env bash
# The transformer comparison (issue 41 item 5): the small ViT of leaderboards/settings/fmnist-vit.toml
# (6 blocks of 4 heads, MLP 128) on Fashion-MNIST, half of every block's heads and MLP channels
# (about 2x FLOPs) and a quarter of the heads with three quarters of the MLP channels; greg1,
# greg2, l1, random and Torch-Pruning's group L2 and Taylor criteria; the paper protocol and the
# 1x equal-sample budget; pruning seeds 0-2 on the baseline of seed 0 (its model.pt is committed).
# Run by third-edition.sh after fmnist-cnn4's paper and 1x points (one training at a time on these 2
# cores); each command is the runner's resume, so running it again after an interruption loses at
# most the job in flight. Cost, from this ViT's measured training speed in the suite's loop (790
# images/s in fp32 on 2 cores of an AMD EPYC; bf16 autocast is slower here, 444/s): the baseline
# about 40 min, then about 110 min per target and seed (GReg's 10,501 iterations on the whole
# model, and four methods' 1x fine-tuning of 909,376 samples), about 11-12 CPU-hours in all.
# The targets to run may be given as arguments (third-edition.sh runs them apart); none: both.
#   nohup bash leaderboards/campaigns/fmnist-vit.sh > fmnist-vit.log 2>&1 &
# The whole script is one function (its body left unindented for the here-documents), which
# bash reads whole before any of it runs: a campaign edited while it runs goes on with the text
# it started with (bash reads a plain script as it goes, so an edit would land it mid-line).
main() {
set -uo pipefail
cd "$(dirname "$0")/../.."
setting=leaderboards/settings/fmnist-vit.toml
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("heads=0.5,mlp=0.5" "heads=0.25,mlp=0.75")

for ratios in "${targets[@]}"; do
  for seed in 0 1 2; do
    .venv/bin/suite run --setting "$setting" --ratios "$ratios" --methods greg1,greg2,l1,random,tp-l2,tp-taylor \
      --budget paper,total:1x --seed-list "$seed" --runs-dir leaderboards/runs --recompute-stale ||
      echo "campaign: fmnist-vit $ratios seed $seed ended with status $?"
  done
  # the pruned architecture's latency per runtime, stored beside the runs for the page (random
  # weights); once per machine: a restarted campaign does not time it again (timed_here.py)
  if .venv/bin/python leaderboards/campaigns/timed_here.py leaderboards/runs fmnist-vit "$ratios"; then
    echo "fmnist-vit.sh: $ratios: timed on this machine already"
  else
    .venv/bin/suite latency --setting "$setting" --ratios "$ratios" --threads 2 --runs-dir leaderboards/runs ||
      echo "campaign: fmnist-vit latency at $ratios ended with status $?"
  fi
done
}
# exit on the line that runs main: bash has read it before main starts, so nothing after main is read
# from a file that may have been edited meanwhile (a next line would be read at its old offset)
main "$@"; exit
