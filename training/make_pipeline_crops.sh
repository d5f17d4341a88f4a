#!/usr/bin/env bash
# Build the "pipeline crops" training sets: synthetic form photos written with MNIST *train*
# digits (never t10k), read back by rekap's own alignment and segmentation (`rekap crops`), so
# the model trains on exactly what `rekap process` feeds it. Output: training/data/ (git-ignored).
#
#   training/make_pipeline_crops.sh            # then train.py as training/README.md says
#
# pipeline-a..c: the held-out split of train.py's --extra comes from these (v4-v7);
# pipeline-d, -e: train-only crops (--extra-train), since v6.
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST="${MNIST:-../shared/data/mnist}"
OUT=training/data
mkdir -p "$OUT"
cargo build --release --quiet
BIN=target/release/rekap
# The photos use the 54,000 training-part images only: the 6,000 that train.py holds out must not
# reach the model through the crops. (The crop sets of v4-v6 were written from the whole train
# file, so their held-out MNIST figures are not clean; v7 is the first model trained on these.)
PY="${PY:-training/.venv/bin/python}"
"$PY" training/write_train_part.py --mnist "$MNIST" --out "$OUT/mnist-trainpart"
DIGITS="$OUT/mnist-trainpart-images-idx3-ubyte.gz"
# Seeds 9001-9005 are reserved for training data; tests and measurements use other seeds.
"$BIN" synth --count 250 --seed 9001 --size 3mp --digits "$DIGITS" --out "$OUT/synth-a"
"$BIN" synth --count 150 --seed 9002 --size 1.5mp --digits "$DIGITS" --out "$OUT/synth-b"
"$BIN" synth --count 100 --seed 9003 --size 12mp --digits "$DIGITS" --out "$OUT/synth-c"
"$BIN" synth --count 250 --seed 9004 --size 3mp --digits "$DIGITS" --out "$OUT/synth-d"
"$BIN" synth --count 100 --seed 9005 --size 12mp --digits "$DIGITS" --out "$OUT/synth-e"
"$BIN" crops --truth "$OUT/synth-a" --out "$OUT/pipeline-a"
"$BIN" crops --truth "$OUT/synth-b" --out "$OUT/pipeline-b"
"$BIN" crops --truth "$OUT/synth-c" --out "$OUT/pipeline-c"
"$BIN" crops --truth "$OUT/synth-d" --out "$OUT/pipeline-d"
"$BIN" crops --truth "$OUT/synth-e" --out "$OUT/pipeline-e"
