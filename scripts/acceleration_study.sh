#!/bin/bash
# The study of docs/acceleration.md: every compare.py run behind its tables. A, B and D: 60 runs
# and about 135,000 training steps (about 4 hours of one core of a 2-core AMD EPYC at its idle
# cost of 0.03-0.08 s a step plus evaluation); C and E, in a later session: 9 Muon runs of 2000
# steps and 22 GPT-2 BPE runs of 600 (2 h 10 min on both cores). Each part ran as two streams
# side by side, one per core, sharing the machine with other jobs; a killed run was continued
# with --init_from=resume, which is exact.
# Usage: scripts/acceleration_study.sh OUT_DIR  (data prepared under OUT_DIR/data on first use)
set -euo pipefail
OUT=${1:?usage: scripts/acceleration_study.sh OUT_DIR}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1  # one run per core
# one LN_v per block: train.py's default when A-E ran (the paper's per-substep LN_v is the default
# since); per-arm values (B's per_substep arm) still override it
DATA="--data_root=$OUT/data --dtype=float32 --compile=False --velocity_norm=shared"
BYTES="$DATA --block_size=64 --batch_size=12 --eval_iters=20 --log_interval=25"
L2000="--max_iters=2000 --lr_decay_iters=2000 --warmup_iters=100 --eval_interval=100"

# A: run length at the default model (4L/4H/128), byte-level Python docs
python compare.py --arms baseline nesterov matched --seeds 1 2 3 --out_dir=$OUT/A2000 $BYTES $L2000
python compare.py --arms baseline nesterov matched --seeds 1 2 3 --out_dir=$OUT/A600 $BYTES \
    --max_iters=600 --lr_decay_iters=600 --warmup_iters=60 --eval_interval=50
python compare.py --arms baseline nesterov matched --seeds 1 2 3 --out_dir=$OUT/A5000 $BYTES \
    --max_iters=5000 --lr_decay_iters=5000 --warmup_iters=100 --eval_interval=100
# B: the block's open choices, against A2000's baseline, nesterov and matched
python compare.py --arms per_substep=nesterov,velocity_norm=per_substep slr50=nesterov,scalar_lr_mult=50 \
    vzero=nesterov,velocity_init=zero polyak nesterov_euler --seeds 1 2 3 --out_dir=$OUT/B2000 $BYTES $L2000
# D: sizes on the byte data (4L/128 is A2000)
for C in 96 64; do
  python compare.py --arms baseline nesterov matched --seeds 1 2 3 --out_dir=$OUT/D2000_4L$C $BYTES $L2000 \
      --n_layer=4 --n_head=4 --n_embd=$C
done
# C: Muon on the block matrices (the paper's recipe; muon.py, Newton-Schulz in float32 as train.py
# chooses for a float32 run) instead of AdamW, against A2000
for s in 1 2 3; do
  python compare.py --arms baseline nesterov matched --seeds $s --out_dir=$OUT/C2000_muon $BYTES $L2000 --optimizer=muon
done
# E: sizes on a GPT-2 BPE corpus: Python's standard library sources, 4L at widths 32, 64 and 128.
# The matched baseline (about twice as wide: the velocity table is as large as the token table)
# ran for seed 1 at every width and seed 2 at width 64, as far as the CPU budget reached
python scripts/python_sources.py --out_dir=$OUT/data/pysrc_text
python prepare/tinystories.py --train_files $OUT/data/pysrc_text/train.txt --val_files $OUT/data/pysrc_text/val.txt \
    --out_dir=$OUT/data/pysrc
BPE="$DATA --dataset=pysrc --block_size=64 --batch_size=8 --eval_iters=10 --log_interval=25 --max_iters=600 \
    --lr_decay_iters=600 --warmup_iters=60 --eval_interval=100 --n_layer=4 --n_head=4"
for C in 128 64 32; do
  python compare.py --arms baseline nesterov matched --seeds 1 --out_dir=$OUT/E600_bpe_4L$C $BPE --n_embd=$C
  python compare.py --arms baseline nesterov --seeds 2 3 --out_dir=$OUT/E600_bpe_4L$C $BPE --n_embd=$C
done
python compare.py --reuse --arms baseline nesterov matched --seeds 2 --out_dir=$OUT/E600_bpe_4L64 $BPE --n_embd=64

# step costs for the equal-time columns: 40 steps of every arm at every shape, one run at a time on
# an otherwise idle machine (the runs above shared it, which blurs their own step times), three
# rounds so that the machine's drift between fast and slow minutes hits every arm
COST="--seeds 1 --max_iters=40 --lr_decay_iters=40 --warmup_iters=4 --eval_interval=1000 --eval_iters=1 --log_interval=1"
for round in 1 2 3; do
  python compare.py --arms baseline nesterov matched per_substep=nesterov,velocity_norm=per_substep \
      slr50=nesterov,scalar_lr_mult=50 vzero=nesterov,velocity_init=zero polyak nesterov_euler \
      --out_dir=$OUT/costs/A/round$round $BYTES $COST
  for C in 96 64; do
    python compare.py --arms baseline nesterov matched --out_dir=$OUT/costs/D2000_4L$C/round$round $BYTES $COST \
        --n_layer=4 --n_head=4 --n_embd=$C
  done
done
# C and E: one round each (this part ran in a later session with less machine time)
python compare.py --arms baseline nesterov matched --out_dir=$OUT/costs/C2000_muon $BYTES $COST --optimizer=muon
for C in 128 64 32; do
  python compare.py --arms baseline nesterov matched --out_dir=$OUT/costs/E600_bpe_4L$C $BPE $COST --n_embd=$C
done

# the tables and figures of docs/acceleration.md (B's arms beside A2000's)
D=docs/acceleration
python compare.py --summarize $OUT/A2000 $OUT/B2000 --ref baseline --step_times $OUT/costs/A --out_dir=$D/B2000
for d in A600 A2000 A5000; do
  python compare.py --summarize $OUT/$d --ref baseline --step_times $OUT/costs/A --out_dir=$D/$d
done
for d in D2000_4L96 D2000_4L64; do
  python compare.py --summarize $OUT/$d --ref baseline --step_times $OUT/costs/$d --out_dir=$D/$d
done
python compare.py --summarize $OUT/C2000_muon --ref baseline --step_times $OUT/costs/C2000_muon --out_dir=$D/C2000_muon
for C in 128 64 32; do
  python compare.py --summarize $OUT/E600_bpe_4L$C --ref baseline --step_times $OUT/costs/E600_bpe_4L$C \
      --out_dir=$D/E600_bpe_4L$C
done
