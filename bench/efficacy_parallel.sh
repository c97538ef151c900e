#!/usr/bin/env bash
# The four arms of bench/search_efficacy.py at once, one process each, sharing one machine's GPU and
# cores (the arms get the same wall time and the same share, so the comparison stays fair); on a GPU
# machine the whole table fits one device call. Each arm writes OUT/efficacy_<arm>.json (with the chosen
# recipe, to become a known recipe) and OUT/<arm>.db (its study; the trials' folders stay in
# /tmp/efficacy-runs, too many files to bring back). Resumable while /tmp stays: rerun the same line.
#   bash bench/efficacy_parallel.sh ROOT OUT MINUTES RETRAIN_MINUTES [extra search_efficacy.py options]
set -euo pipefail
root=$1 out=$2 minutes=$3 retrain=$4
shift 4
mkdir -p "$out"
threads=$(( $(nproc) / 4 > 0 ? $(nproc) / 4 : 1 ))
pids=()
for arm in tpe-warm tpe random ladder; do
  OMP_NUM_THREADS=$threads python3 bench/search_efficacy.py --root "$root" --arms "$arm" --minutes "$minutes" \
    --retrain-minutes "$retrain" --device auto --runs-dir /tmp/efficacy-runs --cache-dir "/tmp/efficacy-cache-$arm" \
    --out "$out/efficacy_$arm.json" "$@" > "$out/$arm.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for arm in tpe-warm tpe random; do cp "/tmp/efficacy-runs/$arm/study.db" "$out/$arm.db" 2>/dev/null || true; done
tail -n 3 "$out"/*.log
exit $status
