#!/usr/bin/env bash
# Train, export and card several models one after another (one at a time: 2 shared cores).
#   nohup nice -n 5 bash training/queue.sh ssrnet ssrnet-gender > runs/queue.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
for name in "$@"; do
  echo "=== $name $(date -u +%FT%TZ)"
  python -m training.train "$name" ${FACEAGE_TRAIN_THREADS:+--threads "$FACEAGE_TRAIN_THREADS"} >> "runs/$name.log" 2>&1 \
    && python -m training.export "$name" \
    && python -m training.cards "$name" \
    || echo "!!! $name failed"
done
echo "=== done $(date -u +%FT%TZ)"
