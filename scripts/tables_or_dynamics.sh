#!/bin/bash
# The study of docs/acceleration.md's sections F (tables or dynamics: the 2x2 of velocity tables
# x momentum dynamics, and its neighbours) and G (depth). Every run goes through compare.py with
# --reuse, so the same command continues a study stopped midway (finished runs are kept, a run
# stopped between checkpoints resumes from its last one, which is exact).
#
# Usage: scripts/tables_or_dynamics.sh OUT_DIR          the runs, two streams, one per core
#        scripts/tables_or_dynamics.sh OUT_DIR adamw    one stream alone (or muon)
#        scripts/tables_or_dynamics.sh OUT_DIR deeper   G's baseline matched in parameters by depth
#                                                       (width 32; both optimizers, one per core)
#        scripts/tables_or_dynamics.sh OUT_DIR g_sweep  G's AdamW rates checked at 4 and 12 layers
#        scripts/tables_or_dynamics.sh OUT_DIR g_tuned  then baseline and tables at the baseline's
#                                                       best rate there (g_sweep found it above 4e-3)
#        scripts/tables_or_dynamics.sh OUT_DIR f_tables_rate  F's tables arm at 8e-3 (AdamW, seed 1)
#        scripts/tables_or_dynamics.sh OUT_DIR costs    step costs for the equal-time columns
#                                                       (40-step runs, one at a time: run it on
#                                                       an otherwise idle machine)
#        scripts/tables_or_dynamics.sh OUT_DIR tables   the summaries under docs/acceleration/
#
# Order: learning-rate sweeps first (one seed, baseline and nesterov, at the 4L/128 bytes
# setting), then every arm at the best rate of its family (baseline, tables and matched take the
# baseline's; nesterov and nesterov_tied take nesterov's): AdamW stream: F2000_adamw, G_adamw,
# then E1200 seeds 1-2; Muon stream: F2000_muon, G_muon, then E1200 seed 3.
set -euo pipefail
OUT=${1:?usage: scripts/tables_or_dynamics.sh OUT_DIR [costs|tables]}
MODE=${2:-runs}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1  # one run per core
# per_substep LN_v: the paper's block (config/nesterov.py); the gd arms have no LN_v
DATA="--data_root=$OUT/data --dtype=float32 --compile=False --velocity_norm=per_substep"
BYTES="$DATA --block_size=64 --batch_size=12 --eval_iters=20 --log_interval=25"
L2000="--max_iters=2000 --lr_decay_iters=2000 --warmup_iters=100 --eval_interval=100"
BPE="$DATA --dataset=pysrc --block_size=64 --batch_size=8 --eval_iters=10 --log_interval=25 --max_iters=1200 \
    --lr_decay_iters=1200 --warmup_iters=100 --eval_interval=100 --n_layer=4 --n_head=4 --n_embd=64"
CMP="python compare.py --reuse"
ARMS_2X2="baseline tables nesterov_tied nesterov"

# the AdamW rate sweep (min_lr = lr/10, as at the default 1e-3; 4e-3 and then 8e-3 were added
# when the baseline's best came out at the grid's top edge, 2e-3 and then 4e-3) and the Muon one (AdamW stays at
# 1e-3 on the tables, norms and scalars; every group decays to 0.1x its peak; 0.005 was added once
# nesterov's best came out at 0.01, the grid's edge)
adamw_sweep() {
  $CMP --arms base_lr5e-4=baseline,learning_rate=5e-4,min_lr=5e-5 base_lr1e-3=baseline \
      base_lr2e-3=baseline,learning_rate=2e-3,min_lr=2e-4 nest_lr5e-4=nesterov,learning_rate=5e-4,min_lr=5e-5 \
      nest_lr1e-3=nesterov nest_lr2e-3=nesterov,learning_rate=2e-3,min_lr=2e-4 \
      base_lr4e-3=baseline,learning_rate=4e-3,min_lr=4e-4 nest_lr4e-3=nesterov,learning_rate=4e-3,min_lr=4e-4 \
      base_lr8e-3=baseline,learning_rate=8e-3,min_lr=8e-4 nest_lr8e-3=nesterov,learning_rate=8e-3,min_lr=8e-4 \
      --seeds 1 --out_dir=$OUT/sweep_adamw $BYTES $L2000
}
muon_sweep() {
  $CMP --arms base_mlr0.01=baseline,muon_lr=0.01 base_mlr0.02=baseline,muon_lr=0.02 \
      base_mlr0.04=baseline,muon_lr=0.04 nest_mlr0.01=nesterov,muon_lr=0.01 nest_mlr0.02=nesterov,muon_lr=0.02 \
      nest_mlr0.04=nesterov,muon_lr=0.04 base_mlr0.005=baseline,muon_lr=0.005 nest_mlr0.005=nesterov,muon_lr=0.005 \
      --seeds 1 --out_dir=$OUT/sweep_muon $BYTES $L2000 --optimizer=muon
}

# the best rate of an arm family in a sweep: the lowest final validation loss (seed 1)
best() {  # best SWEEP_DIR PREFIX -> e.g. 1e-3
  python - "$1/summary.csv" "$2" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r['arm'].startswith(sys.argv[2] + '_')]
print(min(rows, key=lambda r: float(r['final_val']))['arm'].split('lr')[-1])
EOF
}

adamw_arms() {  # the 2x2 and matched, each at its family's AdamW rate
  local B N
  B=$(best $OUT/sweep_adamw base); N=$(best $OUT/sweep_adamw nest)
  local LB="learning_rate=$B,min_lr=$(python -c "print($B / 10)")" LN="learning_rate=$N,min_lr=$(python -c "print($N / 10)")"
  echo "baseline=baseline,$LB tables=tables,$LB nesterov_tied=nesterov_tied,$LN nesterov=nesterov,$LN matched=matched,$LB"
}
muon_arms() {
  local B N
  B=$(best $OUT/sweep_muon base); N=$(best $OUT/sweep_muon nest)
  echo "baseline=baseline,muon_lr=$B tables=tables,muon_lr=$B nesterov_tied=nesterov_tied,muon_lr=$N" \
       "nesterov=nesterov,muon_lr=$N matched=matched,muon_lr=$B"
}
no_tied_no_matched() { tr ' ' '\n' | grep -v -e '^nesterov_tied=' -e '^matched=' | tr '\n' ' '; }

bpe_data() {
  if [ ! -f $OUT/data/pysrc/meta.json ]; then
    python scripts/python_sources.py --out_dir=$OUT/data/pysrc_text
    python prepare/tinystories.py --train_files $OUT/data/pysrc_text/train.txt \
        --val_files $OUT/data/pysrc_text/val.txt --out_dir=$OUT/data/pysrc
  fi
}

adamw_stream() {
  adamw_sweep
  local ARMS
  ARMS=$(adamw_arms)
  # F: the 2x2 and matched, 4L/128 bytes (A2000's setting)
  for s in 1 2 3; do $CMP --arms $ARMS --seeds $s --out_dir=$OUT/F2000_adamw $BYTES $L2000; done
  # G: depth at width 64: baseline, tables, nesterov
  for L in 4 8 12; do for s in 1 2 3; do
    $CMP --arms $(echo $ARMS | no_tied_no_matched) --seeds $s --out_dir=$OUT/G2000_adamw_${L}L64 $BYTES $L2000 \
        --n_layer=$L --n_head=4 --n_embd=64
  done; done
  # E: GPT-2 BPE 4L/64 (Python sources), 1200 steps
  bpe_data
  for s in 1 2; do $CMP --arms $ARMS --seeds $s --out_dir=$OUT/E1200_bpe_4L64 $BPE; done
}

muon_stream() {
  muon_sweep
  local ARMS
  ARMS=$(muon_arms)
  for s in 1 2 3; do $CMP --arms $ARMS --seeds $s --out_dir=$OUT/F2000_muon $BYTES $L2000 --optimizer=muon; done
  for L in 4 8 12; do for s in 1 2 3; do
    $CMP --arms $(echo $ARMS | no_tied_no_matched) --seeds $s --out_dir=$OUT/G2000_muon_${L}L64 $BYTES $L2000 \
        --n_layer=$L --n_head=4 --n_embd=64 --optimizer=muon
  done; done
  while [ ! -f $OUT/data/pysrc/meta.json ]; do sleep 60; done  # the AdamW stream prepares it
  $CMP --arms $(adamw_arms) --seeds 3 --out_dir=$OUT/E1200_bpe_4L64 $BPE
}

# G's baseline matched in parameters by depth. At width 64 one more layer (49,280 parameters) is
# 2.4x what the velocity tables add (20,484); at width 32 it is 12,352 against 10,240 (nesterov
# 4L/32: 70,200 parameters; the baseline at 5 layers: 72,032), close enough to compare.
deeper() {  # deeper adamw|muon
  local ARMS LB FLAGS=""
  ARMS=$(${1}_arms | no_tied_no_matched)
  LB=$(echo $ARMS | tr ' ' '\n' | grep '^baseline=' | cut -d, -f2-)
  [ $1 = muon ] && FLAGS=--optimizer=muon
  for s in 1 2 3; do
    $CMP --arms $ARMS deeper=baseline,n_layer=5,$LB --seeds $s --out_dir=$OUT/G2000_${1}_4L32 $BYTES $L2000 \
        --n_layer=4 --n_head=4 --n_embd=32 $FLAGS
  done
}

# G runs every depth at the rates tuned at 4L/128. Whether they are still each model's best at
# width 64, shallow and deep: AdamW 2e-3 and 8e-3 (4e-3 is G's seed 1), baseline and nesterov,
# seed 1, at 4 and 12 layers
g_sweep() {
  for L in 4 12; do
    $CMP --arms base_lr2e-3=baseline,learning_rate=2e-3,min_lr=2e-4 nest_lr2e-3=nesterov,learning_rate=2e-3,min_lr=2e-4 \
        base_lr8e-3=baseline,learning_rate=8e-3,min_lr=8e-4 nest_lr8e-3=nesterov,learning_rate=8e-3,min_lr=8e-4 \
        --seeds 1 --out_dir=$OUT/sweep_adamw_${L}L64 $BYTES $L2000 --n_layer=$L --n_head=4 --n_embd=64
  done
}

# g_sweep found the baseline's best AdamW rate at width 64 above 4e-3 (8e-3 beat 4e-3 at 4 and 12
# layers; nesterov's stayed at 4e-3), so: 1.6e-2 for the grid's edge, then baseline and tables at
# the baseline's best of 2e-3, 8e-3 and 1.6e-2 (4e-3 lost to 8e-3 at both depths), seeds 1-3
g_tuned() {
  local L B
  for L in 4 12; do
    $CMP --arms base_lr2e-3=baseline,learning_rate=2e-3,min_lr=2e-4 base_lr8e-3=baseline,learning_rate=8e-3,min_lr=8e-4 \
        base_lr1.6e-2=baseline,learning_rate=1.6e-2,min_lr=1.6e-3 --seeds 1 --out_dir=$OUT/sweep_adamw_${L}L64 \
        $BYTES $L2000 --n_layer=$L --n_head=4 --n_embd=64  # the first two are g_sweep's, reused
    B=$(best $OUT/sweep_adamw_${L}L64 base)
    local LB="learning_rate=$B,min_lr=$(python -c "print($B / 10)")"
    $CMP --arms baseline=baseline,$LB tables=tables,$LB --seeds 1 2 3 --out_dir=$OUT/G2000_adamw_${L}L64_tuned \
        $BYTES $L2000 --n_layer=$L --n_head=4 --n_embd=64
  done
}

# At width 64 the tables arm gained more than the baseline from 8e-3 (g_tuned), so F's AdamW
# tables arm, which ran at the baseline's 4e-3, is checked at 8e-3 too (seed 1, 4L/128)
f_tables_rate() {
  $CMP --arms tables_lr8e-3=tables,learning_rate=8e-3,min_lr=8e-4 --seeds 1 --out_dir=$OUT/sweep_adamw_tables $BYTES $L2000
}

case $MODE in
runs)
  mkdir -p $OUT
  python -c "import loader; loader.make_default_corpus_if_missing('$OUT/data/python_docs')"
  adamw_stream > $OUT/adamw_stream.log 2>&1 &
  muon_stream > $OUT/muon_stream.log 2>&1 &
  wait
  ;;
adamw|muon)
  ${MODE}_stream >> $OUT/${MODE}_stream.log 2>&1
  ;;
g_sweep|g_tuned|f_tables_rate)
  $MODE >> $OUT/${MODE}_stream.log 2>&1
  ;;
deeper)
  deeper adamw >> $OUT/deeper_adamw_stream.log 2>&1 &
  deeper muon >> $OUT/deeper_muon_stream.log 2>&1 &
  wait
  ;;
costs)
  COST="--seeds 1 --max_iters=40 --lr_decay_iters=40 --warmup_iters=4 --eval_interval=1000 --eval_iters=1 --log_interval=1"
  for round in 1 2 3; do
    $CMP --arms $(adamw_arms) --out_dir=$OUT/costs/F2000_adamw/round$round $BYTES $COST
    $CMP --arms $(muon_arms) --out_dir=$OUT/costs/F2000_muon/round$round $BYTES $COST --optimizer=muon
    for L in 4 8 12; do
      $CMP --arms $(adamw_arms | no_tied_no_matched) --out_dir=$OUT/costs/G2000_adamw_${L}L64/round$round $BYTES \
          $COST --n_layer=$L --n_head=4 --n_embd=64
      $CMP --arms $(muon_arms | no_tied_no_matched) --out_dir=$OUT/costs/G2000_muon_${L}L64/round$round $BYTES \
          $COST --n_layer=$L --n_head=4 --n_embd=64 --optimizer=muon
    done
    $CMP --arms $(adamw_arms) --out_dir=$OUT/costs/E1200_bpe_4L64/round$round $BPE $COST
  done
  ;;
tables)  # equal steps; where the costs mode has not run, the equal-time columns use each run's
         # median step on the shared machine (--time=median), which is no evidence of cost
  D=docs/acceleration
  python compare.py --summarize $OUT/sweep_adamw --ref base_lr1e-3 --out_dir=$D/sweep_adamw
  python compare.py --summarize $OUT/sweep_muon --ref base_mlr0.02 --out_dir=$D/sweep_muon
  for L in 4 12; do python compare.py --summarize $OUT/sweep_adamw_${L}L64 --ref base_lr8e-3 --time=median \
      --out_dir=$D/sweep_adamw_${L}L64; done
  for d in F2000_adamw F2000_muon E1200_bpe_4L64 $(cd $OUT && ls -d G2000_* | grep -v _tuned); do
    T=--time=median; [ -d $OUT/costs/$d ] && T="--step_times $OUT/costs/$d"
    python compare.py --summarize $OUT/$d --ref baseline $T --out_dir=$D/$d
  done
  for L in 4 12; do  # baseline and tables at the baseline's width-64 rate, nesterov at its own
    python compare.py --summarize $OUT/G2000_adamw_${L}L64_tuned/baseline $OUT/G2000_adamw_${L}L64_tuned/tables \
        $OUT/G2000_adamw_${L}L64/nesterov --ref baseline --time=median --out_dir=$D/G2000_adamw_${L}L64_tuned
  done
  ;;
esac
