#!/usr/bin/env bash
# Issue 42 item 4's accuracy comparison: a setting pruned to a 2x latency target measured under ONNX
# Runtime at batch 64 (fp32 inference; the search runs once on this machine and is stored under the
# runs dir), against two uniform references: the uniform ratio of the same measured speed
# (--latency-search uniform, the issue's "uniform ratios of the same measured latency"), and the
# uniform ratio of the same FLOPs speedup (trained only where it is another cut); greg1 and l1,
# 3 seeds, the paper protocol, one baseline. Resumable like every suite run: run it again after an
# interruption.
#   latency-target.sh [--also KIND]... [SETTING [SUITE RUN OPTIONS...]]   (e.g. ... cifar10jpg-tv-resnet18.toml --round-to 32)
# Without arguments: cifar10jpg-resnet20 (run by third-edition.sh after fmnist-cnn4's paper and 1x
# points, about 4.5 CPU-hours), trained in bf16 + channels-last from the bf16 baseline of seed 0 that
# the third edition's ResNet-20 runs share (about 2.2x fp32's training speed here, ci/bench-train):
# both sides of the comparison train in the same precision, which is all a comparison needs. With
# leaderboards/settings/cifar10jpg-tv-resnet18.toml: the same question on a model whose stages are
# wider (64 to 512 channels, against ResNet-20's 16 to 64), in fp32 from its committed baseline,
# whether ResNet-20's answer (the uniform cut keeps more) is its narrow stages' or the search's. With
# that setting and --round-to 32: the same comparison with every kept count a multiple of 32 (its own
# searches, cuts and timings), since ONNX Runtime here ran ResNet-18's unaligned counts up to 2.8x
# slower than the whole model, and both earlier searches chose among such counts.
# --also KIND adds an arm after the three: the cut of --latency-search KIND (spread, spread-flops: a
# removed parameter counted by how deep its layer is already cut, by parameters or by multiply-adds:
# stop 58), trained, timed and set beside the uniform cuts the same way, with the uniform ratio of
# its own FLOPs; the first three are found, not redone.
#   nohup bash leaderboards/campaigns/latency-target.sh > latency-target.log 2>&1 &
# The whole script is one function (its body left unindented for the here-documents), which
# bash reads whole before any of it runs: a campaign edited while it runs goes on with the text
# it started with (bash reads a plain script as it goes, so an edit would land it mid-line).
main() {
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=leaderboards/runs
also=()
while [ "${1:-}" = --also ]; do also+=("$2"); shift 2; done
setting=${1:-cifar10jpg-resnet20}
if [ $# -gt 1 ]; then options=("${@:2}"); elif [ $# -eq 0 ]; then options=(--precision bf16 --channels-last); else options=(); fi
asks() { .venv/bin/python leaderboards/campaigns/latency_comparison.py "$@"; }  # its questions: that file's docstring
name=$(asks name "$setting")
# the alignment the runs prune with (a --round-to among the options, else the setting's own): the
# searches, the cuts and their timings of this comparison are those of that alignment
round_to=$(asks alignment "$setting" "${options[@]}")
# both settings read data/cifar10-jpg (gitignored): unpack the offline copy there once (a
# link left to a folder that is gone is replaced)
[ -d data/cifar10-jpg/train ] || { rm -f data/cifar10-jpg 2>/dev/null || true; mkdir -p data/cifar10-jpg && tar xzf ../shared/data/cifar10-jpg.tar.gz -C data/cifar10-jpg; }
# A latency target belongs to the machine it was measured on: on another CPU, `suite run` would
# search again and start a second comparison. Once this one's search is stored, it is finished on
# that machine only (model name and instruction set); elsewhere the campaign goes on with its other
# work and this waits (a search stored before its record held the instruction set is named with the
# one its session's note gives: latency_comparison.py's STOP48_ISA).
searched_on=$(asks searched-on "$runs" "$name" "$round_to")
here=$(.venv/bin/python -c 'import torch; from suite.measure.metrics import machine, machine_text; print(machine_text(machine(torch.device("cpu"))))')
if [ -n "$searched_on" ] && [ "$searched_on" != "$here" ]; then
  echo "latency-target.sh: $name: this comparison's search was measured on $searched_on, this machine is $here: skipped here"
  exit 0
fi
# the per-unit search's arm, the comparison's first (named: spread-flops is the default since stop 59)
.venv/bin/suite run --setting "$setting" --methods greg1,l1 --seed-list 0,1,2 --runs-dir "$runs" \
  --target 2x-latency --latency-search per-unit --latency-runtime onnx --latency-batch 64 "${options[@]}"
found() {  # FIELD of this machine's 2x search of kind SEARCH (per-unit, spread, spread-flops, uniform) at this alignment: ratios (default) or flops
  asks found "$runs" "$name" "$round_to" "$1" "${2:-ratios}"
}
# the uniform ratio whose measured speed reaches the same target, searched once on this machine; L1's
# three seeds first (ResNet-20: 8 min a run against GReg-1's 22 in bf16 here: a session that ends early
# has one method's whole comparison rather than a third of each)
for methods in l1 greg1; do
  .venv/bin/suite run --setting "$setting" --methods "$methods" --seed-list 0,1,2 --runs-dir "$runs" \
    --target 2x-latency --latency-search uniform --latency-runtime onnx --latency-batch 64 "${options[@]}"
done
# the FLOPs speedup a per-stage search's ratios took, from the search this machine stored; the uniform
# ratio of that FLOPs is trained only where it is another cut than the uniform ratio of the same
# speed: on ResNet-20 at 2x on ONNX Runtime both are 0.8625 (7.333x prunes to the same counts), one
# computation the page shows in both rows (suite.pages.latency_cuts.same_uniform_cut)
same_flops() {  # SEARCH (per-unit, spread, spread-flops): its uniform FLOPs reference trained where it is another cut; prints the cut
  local flops same
  flops=$(found "$1" flops)
  same=$(asks same-cut "$setting" "${flops}x" "$(found uniform)" "$round_to")
  if [ "$same" = 0 ]; then
    .venv/bin/suite run --setting "$setting" --methods greg1,l1 --seed-list 0,1,2 --runs-dir "$runs" \
      --target "${flops}x" "${options[@]}" >&2 || return
    echo "${flops}x"
  fi
}
cuts=("$(found per-unit)" "$(found uniform)")
reference=$(same_flops per-unit)
[ -z "$reference" ] || cuts+=("$reference")
# the architectures timed alike under the runtime and batch of the target, with OpenVINO beside it
# and the channel-alignment sweep, stored for the setting page's "Latency by runtime" (the uniform
# FLOPs reference has no search of its own to say how fast it runs); a minute each, on an otherwise
# idle machine like the searches. Once per machine: a cut this machine has timed so (its record
# exists) is not timed again when the campaign is restarted; the same command by hand times it again
# and replaces the record.
# An aligned comparison's cuts are timed by the sweep's entry of its alignment (the sweep rounds the
# counts as a run of --round-to N does; the page reads that entry).
sweep=1,8,16
case ",$sweep," in *",$round_to,"*) ;; *) sweep=$sweep,$round_to ;; esac
time_cuts() {  # RATIOS...: each timed alike here unless this machine has timed it already
  local ratios
  for ratios in "$@"; do
    .venv/bin/python leaderboards/campaigns/timed_here.py "$runs" "$name" "$ratios" "$round_to" &&
      { echo "latency-target.sh: $name $ratios: timed on this machine already"; continue; }
    .venv/bin/suite latency --setting "$setting" --ratios "$ratios" --runtimes onnx,openvino --batches 64 \
      --round-to "$sweep" --threads 2 --runs-dir "$runs"
  done
}
time_cuts "${cuts[@]}"
# each further search's arm: L1's seeds first, as above; timed before its FLOPs reference is trained,
# which is the arm a session's end can spare
for kind in "${also[@]}"; do
  for methods in l1 greg1; do
    .venv/bin/suite run --setting "$setting" --methods "$methods" --seed-list 0,1,2 --runs-dir "$runs" \
      --target 2x-latency --latency-search "$kind" --latency-runtime onnx --latency-batch 64 "${options[@]}"
  done
  time_cuts "$(found "$kind")"
  reference=$(same_flops "$kind")
  [ -z "$reference" ] || time_cuts "$reference"
done
}
# exit on the line that runs main: bash has read it before main starts, so nothing after main is read
# from a file that may have been edited meanwhile (a next line would be read at its old offset)
main "$@"; exit
