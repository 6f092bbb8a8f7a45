#!/bin/bash
# The records of a study's finished runs, kept in the repo so that a later session on a fresh
# machine continues the study instead of starting it again: `compare.py --reuse` skips a run whose
# compare.json says it finished with the same arguments, and the summaries read only log.jsonl.
# Checkpoints are not kept (10 MB a run); a run that had not finished starts again from step 0.
# The arguments in compare.json hold OUT_DIR's absolute path: restore into the same OUT_DIR.
# Machines differ in their float kernels (the same run agrees to 4 decimals across two of ours at
# small learning rates, not bit for bit), so keep writes machine.txt into each run it keeps for
# the first time: the machine it finished on (keep before a session ends, on the machine that ran
# the runs). Paired differences are cleanest between runs of one machine.
#
# Usage: scripts/study_runs.sh keep OUT_DIR DIR       finished runs of OUT_DIR -> DIR
#        scripts/study_runs.sh restore DIR OUT_DIR    DIR -> OUT_DIR (files already there are kept)
set -euo pipefail
MODE=${1:-}; FROM=${2:-}; TO=${3:-}
if [[ ! $MODE =~ ^(keep|restore)$ || -z $FROM || -z $TO ]]; then
  echo "usage: scripts/study_runs.sh keep OUT_DIR DIR | restore DIR OUT_DIR" >&2; exit 2
fi
if [ ! -d "$FROM" ]; then echo "error: $FROM is not a directory" >&2; exit 1; fi
mkdir -p "$TO"
TO=$(cd "$TO" && pwd)  # absolute: the copy below runs from inside FROM
cd "$FROM"
if [ "$MODE" = keep ]; then
  # a run directory counts when its marker says finished; comparison.json names each out_dir's arms
  machine="$(date -u +%F) $(lscpu | sed -n 's/^Model name:\s*//p; s/^CPU family:\s*/family /p; s/^Model:\s*/model /p' \
      | paste -sd' ') $(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | paste -sd' ')"
  { grep -rl --include=compare.json '"finished": true' . | while read -r m; do
      d=$(dirname "$m"); [ -f "$d/machine.txt" ] || echo "$machine" > "$d/machine.txt"
      for f in compare.json log.jsonl train.log machine.txt; do [ -f "$d/$f" ] && echo "$d/$f"; done
    done
    find . -name comparison.json; find . -maxdepth 1 -name '*_stream.log'; } | sort | tar -cf - -T - | tar -xf - -C "$TO"
else
  find . -type f | tar -cf - -T - | tar -xf - --skip-old-files -C "$TO"  # never replace a file already there
fi
echo "$MODE: $(find "$TO" -name compare.json | wc -l) run records in $TO"
