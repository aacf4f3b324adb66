#!/usr/bin/env bash
# Regenerate data.dvc, the DVC pointer of the embedded default's data/ (params/default.yaml), and copy it here.
#
# The data stage runs in a fresh clone of HEAD (so that no local file leaks into data/), with MLflow off; then
# `tmf dvc-track --targets data` writes the pointer. Commit the result:
#   git add data.dvc && git commit -m "data.dvc: embedded default data"
# tests/test_dvc.py checks that a fresh run reproduces it. Environment: PYTHON (default .venv/bin/python),
# CORES (default all).
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
python=${PYTHON:-$repo/.venv/bin/python}
bin=$(dirname "$python")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

git clone -q "$repo" "$tmp/repo"
printf 'tracking:\n  enabled: false\n' > "$tmp/tracking_off.yaml"
cd "$tmp/repo"
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 PATH="$bin:$PATH"
"$bin/snakemake" --cores "${CORES:-all}" --configfile "$tmp/tracking_off.yaml" -- \
    data/tinyminifrance/packed/images.npy data/tinyminifrance/packed/labels.npy data/tinyminifrance/class_shares.csv
"$bin/tmf" dvc-track --targets data --cfg '{"enabled": false}'
cp data.dvc "$repo/data.dvc"
echo "data.dvc updated in $repo; commit it: git add data.dvc && git commit -m 'data.dvc: embedded default data'"
