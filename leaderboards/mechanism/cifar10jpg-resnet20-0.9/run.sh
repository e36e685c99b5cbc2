#!/usr/bin/env bash
# The commands of REPORT.md, run one after another on an otherwise idle machine (2 threads). Set up first:
#   mkdir -p /tmp/mech-r20/runs/baselines/cifar10jpg-resnet20 /tmp/mech-r20/data
#   cp -r leaderboards/runs/baselines/cifar10jpg-resnet20/0f95b4625c99 /tmp/mech-r20/runs/baselines/cifar10jpg-resnet20/
#   ln -s /tmp/cifar10-jpg /tmp/mech-r20/data/cifar10-jpg   # the unpacked CIFAR-10 JPEG copy
set -e
repo=$(cd "$(dirname "$0")/../../.." && pwd)
cd /tmp/mech-r20
mkdir -p out
PYTHONPATH="$repo" "$repo"/.venv/bin/python "$repo"/leaderboards/mechanism/fmnist-cnn4-0.7/probe.py \
  --name A_greg1_cpu_default --setting cifar10jpg-resnet20 --ratio "[0,0.9,0.9,0.9,0]" --precision bf16 --channels-last \
  --threads 2 --dir /tmp/mech-r20 --baseline-seed 0 --probe-abs 5000 --probe-ks 0,1000,4000 --finetune-ks 1000 \
  --snapshot-steps 10000 > out/A.log 2>&1
PYTHONPATH="$repo" "$repo"/.venv/bin/python "$repo"/leaderboards/mechanism/fmnist-cnn4-0.7/probe.py \
  --name B2_greg1_regrow_tau100 --setting cifar10jpg-resnet20 --ratio "[0,0.9,0.9,0.9,0]" --precision bf16 --channels-last \
  --threads 2 --dir /tmp/mech-r20 --baseline-seed 0 --resume-from ckpt/A_greg1_cpu_default_step10000.ckpt --regrow \
  --hp '{"penalty_increment": 0.01, "penalty_ceiling": 100}' --probe-abs 10900,12900 --probe-ks 0,1000 > out/B2.log 2>&1
PYTHONPATH="$repo" "$repo"/.venv/bin/python "$repo"/leaderboards/mechanism/fmnist-cnn4-0.7/probe.py \
  --name B2c_greg1_tau100_stabilize --setting cifar10jpg-resnet20 --ratio "[0,0.9,0.9,0.9,0]" --precision bf16 --channels-last \
  --threads 2 --dir /tmp/mech-r20 --baseline-seed 0 --resume-from ckpt/B2_greg1_regrow_tau100.ckpt \
  --hp '{"penalty_increment": 0.01, "penalty_ceiling": 100}' --probe-ks 300,1000 --finetune-ks 1000 --max-iters 21001 > out/B2c.log 2>&1
PYTHONPATH="$repo" "$repo"/.venv/bin/python "$repo"/leaderboards/mechanism/fmnist-cnn4-0.7/per_layer.py \
  --setting cifar10jpg-resnet20 --ratio "[0,0.9,0.9,0.9,0]" --precision bf16 --channels-last --threads 2 \
  ckpt/A_greg1_cpu_default_step10000.ckpt ckpt/B2_greg1_regrow_tau100.ckpt > out/per_layer.jsonl 2> out/per_layer.log
