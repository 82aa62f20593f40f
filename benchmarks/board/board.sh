#!/usr/bin/env bash
# The published reference boards, produced and resumed across machines (benchmarks/board/README.md).
#
#   board.sh run DATASET MODELS WORK [OPTIONS]  restore the unfinished runs kept in pending/ into WORK, then run
#                                               `benchmark run --profile reference` for MODELS on DATASET there
#                                               (OPTIONS go to benchmark run, e.g. --data-dir DIR)
#   board.sh restore WORK                       only the first half of run
#   board.sh save WORK...                       keep the unfinished runs of WORK... (and the checkpoints they
#                                               need) in pending/, replacing what it held; refused, with
#                                               pending/ unchanged, if that adds over BOARD_MAX_MB (50) MB
#   board.sh publish WORK...                    add the finished runs of WORK... to leaderboards/ (the rows
#                                               already there stay), regenerate docs/claims.md and leaderboards/README.md's provenance
#
# BOARD_PENDING (default: pending/ beside this script) and BOARD_REPO (default: the repository holding it)
# point elsewhere, for tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="${BOARD_REPO:-$(cd "$here/../.." && pwd)}"
pending="${BOARD_PENDING:-$here/pending}"
max_mb="${BOARD_MAX_MB:-50}"
usage() { sed -n '4,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

restore() {  # no file in WORK is overwritten: WORK's own progress wins over the kept copy
  mkdir -p "$1"
  if [ -d "$pending" ]; then cp -rn "$pending/." "$1/"; fi
}

save() {
  local stage
  stage="$(mktemp -d)"
  mkdir -p "$stage/runs" "$stage/checkpoints"
  for work in "$@"; do
    [ -d "$work/runs" ] || continue
    for run in "$work"/runs/*/; do
      run="${run%/}"
      [ -f "$run/config.json" ] && [ ! -f "$run/summary.json" ] || continue  # finished runs go to leaderboards/
      cp -r "$run" "$stage/runs/"
      key="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["train_key"])' "$run/config.json")"
      # the run's own weights, and the baseline that may be its transfer surrogate
      [ -d "$work/checkpoints" ] && find "$work/checkpoints" -maxdepth 1 \( -name "*-$key.safetensors" -o -name "*-baseline-*.safetensors" \) \
        -exec cp {} "$stage/checkpoints/" \;
    done
  done
  find "$stage" -name '.*.tmp' -delete  # a write that a kill interrupted
  # pending/ is committed, and git keeps every byte of it for good: count what is new or changed
  local added=0 file
  while IFS= read -r -d '' file; do
    cmp -s "$file" "$pending/${file#"$stage"/}" || added=$((added + $(stat -c %s "$file")))
  done < <(find "$stage" -type f -print0)
  if [ "$added" -gt $((max_mb * 1000000)) ]; then
    echo "board.sh save: keeping these runs would add $(((added + 999999) / 1000000)) MB to pending/, over BOARD_MAX_MB=$max_mb; pending/ is unchanged (finish the runs on one machine, or raise BOARD_MAX_MB)" >&2
    rm -rf "$stage"
    exit 1
  fi
  rm -rf "$pending"
  mkdir -p "$(dirname "$pending")"
  mv "$stage" "$pending"
  echo "pending: $(find "$pending/runs" -mindepth 1 -maxdepth 1 | wc -l) unfinished runs kept in $pending"
}

publish() {
  local stage
  stage="$(mktemp -d)"
  cp -r "$repo/leaderboards" "$stage/"
  mkdir -p "$stage/runs"
  for work in "$@"; do
    for run in "$work"/runs/*/; do
      if [ -f "${run}summary.json" ]; then cp -r "${run%/}" "$stage/runs/"; fi
    done
  done
  benchmark leaderboard --out "$stage"
  benchmark claims --out "$stage" --write "$repo/docs/claims.md"
  rm -f "$stage/leaderboards/.lock"
  rm -rf "$repo/leaderboards"
  cp -r "$stage/leaderboards" "$repo/leaderboards"
  rm -rf "$stage"
  # leaderboards/README.md's provenance tables, from the new CSVs
  [ ! -f "$repo/leaderboards/README.md" ] || python -m benchmark.reference_docs "$repo" provenance
}

[ $# -ge 1 ] || usage
command="$1"; shift
case "$command" in
  run)
    [ $# -ge 3 ] || usage
    dataset="$1" models="$2" work="$3"; shift 3
    restore "$work"
    benchmark run --model "$models" --dataset "$dataset" --profile reference --out "$work" "$@" ;;
  restore) [ $# -eq 1 ] || usage; restore "$1" ;;
  save) [ $# -ge 1 ] || usage; save "$@" ;;
  publish) [ $# -ge 1 ] || usage; publish "$@" ;;
  *) usage ;;
esac
