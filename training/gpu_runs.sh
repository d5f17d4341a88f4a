#!/usr/bin/env bash
# Train several digit-model candidates at once on one GPU machine (JAX with CUDA), one process
# per candidate, and pack what they wrote into one archive. The small CNN leaves a GPU mostly
# idle (each process is bound by its own Python step loop), so the runs share it well.
#
#   DATA=.gpu OUT=/tmp/runs training/gpu_runs.sh        # then train.py --evaluate each file here
#
# DATA holds mnist/ (the four MNIST IDX .gz files) and the crop sets pipeline-a..e written by
# training/make_pipeline_crops.sh (copy them next to each other; the machine sees nothing else).
# Every run trains from scratch (36 epochs by default, batch 128, lr 2e-3) on the leak-free crop
# sets, a-c mixed in with their held-out share and d-e train-only; the candidates (CANDIDATES, "name:args"
# separated by ';', four at a time suit a 16-core machine) differ in the share of plain 28x28
# digits (--direct-frac), the seed and the hidden layer. Session 10 ran the default list and then
#   CANDIDATES='h50:--direct-frac 0.5;h35s1:--direct-frac 0.35 --seed 1;h20:--direct-frac 0.2;h50s1:--direct-frac 0.5 --seed 1'
# (hidden 256); h35s1 became v7. Session 11 ran 36 epochs with
#   CANDIDATES='h512s1:--hidden 512 --seed 1;h512s2:--hidden 512 --seed 2;h256s2:--seed 2;h256s3:--seed 3'
# (then with --hidden 256 as train.py's default, and --name rekap-digits-cnn-v7 given to every run);
# h512s2 became v8 (training/README.md). Full float32
# matrix products (JAX's GPU default, TF32, makes the logits differ from onnxruntime's by up to
# 2e-2, failing train.py's export check). Each run is stopped after LIMIT_S seconds at most.
set -u
cd "$(dirname "$0")/.."
DATA="${DATA:-.gpu}"
OUT="${OUT:-/tmp/rekap-gpu-runs}"
PY="${PY:-python3}"
WORKERS="${WORKERS:-3}"
LIMIT_S="${LIMIT_S:-570}"  # session 11: four 36-epoch runs took 506-531 s
EPOCHS="${EPOCHS:-36}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest PYTHONUNBUFFERED=1
work="$(mktemp -d /tmp/rekap-gpu.XXXXXX)"
mkdir -p "$OUT"
"$PY" -c 'import jax, optax, onnx, onnxruntime; print("jax", jax.__version__, jax.devices(), "optax", optax.__version__, "onnxruntime", onnxruntime.__version__)' \
    2>&1 | tee "$work/env.txt"
# shellcheck disable=SC2206
common=(--mnist "$DATA/mnist" --epochs "$EPOCHS" --workers "$WORKERS"
        --extra "$DATA/pipeline-a" --extra "$DATA/pipeline-b" --extra "$DATA/pipeline-c"
        --extra-train "$DATA/pipeline-d" --extra-train "$DATA/pipeline-e" $EXTRA_ARGS)
run() {
    local name="$1"
    shift
    mkdir -p "$work/$name"
    local t0=$SECONDS
    timeout "$LIMIT_S" "$PY" training/train.py "${common[@]}" --out "$work/$name" "$@" \
        >"$work/$name/train.log" 2>&1
    echo "$name rc=$? seconds=$((SECONDS - t0)) args: $*" >>"$work/status.txt"
}
CANDIDATES="${CANDIDATES:-d20:--direct-frac 0.2 --hidden 128;d35:--direct-frac 0.35 --hidden 128;d50:--direct-frac 0.5 --hidden 128;d35h256:--direct-frac 0.35 --hidden 256}"
IFS=';' read -ra cands <<<"$CANDIDATES"
for c in "${cands[@]}"; do
    # shellcheck disable=SC2086
    run "${c%%:*}" ${c#*:} &
done
wait
cat "$work/status.txt"
grep -H "t10k clean\|held-out crops accuracy\|pipeline crops: accuracy" "$work"/*/train.log
tar czf "$OUT/runs.tgz" -C "$work" .
