#!/bin/bash
# The before/after measurements of docs/measurements.md (2026-12-06), as they were run, with the
# study's runs paused. before: a worktree at 78dcdf6 (git worktree add --detach /work/before 78dcdf6);
# after: /work/main at cd9b778. One venv (main's requirements) for both; each side its own empty cache.
. /work/main/.venv/bin/activate
R=/work/bench_results; mkdir -p $R
export WANDB_MODE=disabled
# round 1: before, then after
for side in before main; do
  cd /work/$side
  export XDG_CACHE_HOME=/work/bench_cache_$side; rm -rf $XDG_CACHE_HOME
  # what auto decides for the default run at the two shapes (no compile record yet)
  python train.py --max_iters=1 --eval_iters=1 --eval_interval=1000 --out_dir=/tmp/auto_cpu_$side > $R/${side}_auto_cpu.txt 2>&1
  python train.py --max_iters=1 --eval_iters=1 --eval_interval=1000 --n_layer=6 --n_head=6 --n_embd=384 \
      --block_size=128 --batch_size=16 --out_dir=/tmp/auto_wide_$side > $R/${side}_auto_wide.txt 2>&1
  # ms/iter eager and compiled, fp32, and peak memory
  python bench.py --arms=baseline,nesterov --dtype=float32 --compile=both --bench_iters=30 --out=$R/${side}_step.json > $R/${side}_step.txt 2>&1
  # the KV cache: default shape, 500 tokens; GPT-2 small, 100 tokens
  python bench.py --arms=baseline,nesterov --bench_iters=0 --sample_tokens=500 --dtype=float32 --out=$R/${side}_kv_cpu.json > $R/${side}_kv_cpu.txt 2>&1
  python bench.py --arms=baseline,nesterov --bench_iters=0 --sample_tokens=100 --dtype=float32 --shape=gpt2 \
      --dataset=random --out=$R/${side}_kv_gpt2.json > $R/${side}_kv_gpt2.txt 2>&1
done
# auto against every explicit choice (after only: before's bench.py has no auto_check)
cd /work/main; export XDG_CACHE_HOME=/work/bench_cache_main
python bench.py --auto_check=True --arms=baseline,nesterov --bench_iters=10 --out=$R/main_auto_check.json > $R/main_auto_check.txt 2>&1
# round 2: after, then before
for side in main before; do
  cd /work/$side; export XDG_CACHE_HOME=/work/bench_cache_$side
  python bench.py --arms=baseline,nesterov --dtype=float32 --compile=False --bench_iters=30 --out=$R/${side}_step_r2.json > $R/${side}_step_r2.txt 2>&1
  python bench.py --arms=baseline,nesterov --bench_iters=0 --sample_tokens=500 --dtype=float32 --out=$R/${side}_kv_cpu_r2.json > $R/${side}_kv_cpu_r2.txt 2>&1
done
