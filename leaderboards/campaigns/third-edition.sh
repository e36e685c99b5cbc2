#!/usr/bin/env bash
# The third edition's runs (issue 40 item 5), in the order that makes a verdict soonest: every
# baseline with pruning seed 0 first (so the baseline is a random factor from the first day), then
# seeds 1 and 2; fmnist-cnn4 at 0.9 before cifar10jpg-resnet20. Each command is the runner's
# resume: a finished run is found, a killed one continues from its checkpoints, so running this
# again after an interruption (a session's end) loses at most the job in flight. --recompute-stale:
# a stored run of the same identity trained by older code is moved to its folder's superseded/ (kept, off
# the pages) and trained again by today's code.
#   nohup bash leaderboards/campaigns/third-edition.sh > leaderboards/campaigns/third-edition.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
runs=leaderboards/runs
for seed in 0 1 2; do
  for base in 0 1 2; do
    .venv/bin/suite run --setting fmnist-cnn4 --ratios 0.9 --methods greg1,greg2,l1,random \
      --budget paper,total:1x,2x,4x --seed-list "$seed" --baseline-seed "$base" --runs-dir "$runs" --recompute-stale ||
      echo "campaign: fmnist-cnn4 seed $seed baseline $base ended with status $?"
  done
done
# GReg-2 with a picking schedule whose pick departs from L1's (the mechanism report, item 6: overlap
# 0.78 / 0.84 / 0.93 at 0.7), as its own row ("greg2 (own hparams)") of the same comparisons
for seed in 0 1 2; do
  for base in 0 1 2; do
    .venv/bin/suite run --setting fmnist-cnn4 --ratios 0.9 --methods greg2 \
      --hparams leaderboards/campaigns/greg2-departing-pick.json \
      --budget paper,total:1x,2x,4x --seed-list "$seed" --baseline-seed "$base" --runs-dir "$runs" --recompute-stale ||
      echo "campaign: fmnist-cnn4 greg2 departing pick seed $seed baseline $base ended with status $?"
  done
done
for seed in 0 1 2; do
  for base in 0 1; do
    .venv/bin/suite run --setting cifar10jpg-resnet20 --ratios 0.9 --methods greg1,greg2,l1 \
      --budget paper,total:1x,2x --seed-list "$seed" --baseline-seed "$base" --runs-dir "$runs" --recompute-stale ||
      echo "campaign: cifar10jpg-resnet20 seed $seed baseline $base ended with status $?"
  done
done
