"""Train the rekap digit model from scratch and write models/digits.onnx + models/digits.json.

    nice training/.venv/bin/python training/train.py --mnist ../shared/data/mnist --out models/

Data: MNIST train split only (6000 images held out for validation/calibration); t10k is used
only for the final test metrics. Every training tensor is a synthetic box crop (MNIST digit,
X or blank, degraded like a photographed box, see rekap_train/synth.py) normalised with the
rekap-mnist-v1 mirror (rekap_train/preprocess.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shlex
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rekap_train import BLANK_CLASS, CLASSES, X_CLASS  # noqa: E402
from rekap_train.calibrate import fit_temperature, format_table, reliability, softmax  # noqa: E402
from rekap_train.data import load_split, read_idx, train_val  # noqa: E402
from rekap_train.preprocess import normalize_batch  # noqa: E402
from rekap_train.synth import make_batch_args  # noqa: E402

#: Synthetic X and blank samples per epoch (each ~8% of an epoch's 54k digits).
X_PER_EPOCH = 4500
BLANK_PER_EPOCH = 4500
#: Held-out synthetic X/blank crops for recall (fresh seeds, glyphs for spill from the val split).
SYNTH_TEST_EACH = 3000
#: Share of digits placed without degradations, to keep the clean MNIST look in the mix.
CLEAN_FRAC = 0.25
#: Extra digits per epoch normalised straight from the 28x28 MNIST image with small affine /
#: elastic distortions (the view t10k is measured in; box rendering resamples every other
#: digit), as a share of the epoch's MNIST digits. Added on top, so no box-crop sample is lost.
#: v7: 0.35 (v4-v6: 0.2).
DIRECT_FRAC = 0.35
#: Decay of the exponential moving average of the weights (per step; ~900 steps an epoch, so
#: the average spans the last ~1 epoch). The EMA weights are evaluated and exported.
DEFAULT_EMA_DECAY = 0.999
#: Batches of the last epoch used to re-estimate the batch-norm statistics of the EMA weights.
EMA_BN_BATCHES = 100
#: Seeds: training epochs use EPOCH_SEED_BASE + 1000 * epoch + chunk; held-out sets their own.
EPOCH_SEED_BASE = 1_000_000
#: --seed N shifts the epochs' data seeds by N * SEED_STRIDE (at most 100 epochs of 1000 chunks).
SEED_STRIDE = 100_000
SEED_VAL_AUG, SEED_SYNTH_TEST, SEED_T10K_BOX = 900_001, 900_002, 900_003
#: ONNX Runtime must reproduce the training framework's logits within this (float32 round-off).
ORT_PARITY_TOL = 1e-3
#: Epochs of the shipped model (v8; v5-v7: 30). v5 was trained on one H100 GPU (about 5 min for
#: 30 epochs, about 6 s an epoch); on the 2-core CPU an epoch of the same data took about 130 s
#: (v4: 12 epochs in 26 min), so the same command needs over an hour there. Every 36-epoch GPU
#: run of session 11 read the held-out selection set better than v7 (30 epochs).
DEFAULT_EPOCHS = 36
#: Shipped architecture: 16/32/64 channels run ~4x faster through ONNX Runtime than 32/64/128
#: (measured 27k vs 6.7k crops/s on one thread, batch 64); the convolutions are ~all the cost,
#: so the hidden dense layer is widened instead: 512 (v8; v7: 256, v4-v6: 128, v3: 64), about
#: 6 % fewer crops/s than 256. Channel counts that are not multiples of 16 are slow in ONNX
#: Runtime: 20/40/80 and 24/48/96 measured 18.6k and 18.3k crops/s on one thread against
#: 52k for 16/32/64 (session 11).
DEFAULT_CHANNELS = (16, 32, 64)
DEFAULT_HIDDEN = 512
#: Name written into the model card.
MODEL_NAME = "rekap-digits-cnn-v8"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def epoch_jobs(epoch, xt, yt, chunks, scale=1.0, direct_frac=DIRECT_FRAC, seed=0):
    # seed 0 (the default) draws the shipped recipe's samples; another seed, fresh ones
    base = EPOCH_SEED_BASE + SEED_STRIDE * seed
    perm = np.random.default_rng(base + epoch).permutation(len(xt))
    parts = np.array_split(perm, chunks)
    nx = int(X_PER_EPOCH * scale) // chunks
    nb = int(BLANK_PER_EPOCH * scale) // chunks
    return [(base + 1000 * epoch + c, xt[idx], yt[idx], nx, nb, 1.0, CLEAN_FRAC, None,
             int(direct_frac * len(idx)))
            for c, idx in enumerate(parts)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist", help="folder with the MNIST IDX .gz files")
    ap.add_argument("--out", default="models", help="output folder for digits.onnx / digits.json")
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=2, help="processes generating augmented data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="smoke test: use only this many train images")
    ap.add_argument("--extra", action="append", default=[], metavar="PREFIX",
                    help="pipeline crops written by `rekap crops` (PREFIX-images-idx3-ubyte.gz and "
                         "PREFIX-labels-idx1-ubyte.gz, already normalised); repeatable")
    ap.add_argument("--channels", default=",".join(str(c) for c in DEFAULT_CHANNELS),
                    help="conv channels of the three stages, comma-separated")
    ap.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN, help="units of the hidden dense layer")
    ap.add_argument("--direct-frac", type=float, default=DIRECT_FRAC,
                    help="extra plain 28x28 (distorted) digits per epoch, as a share of the MNIST digits")
    ap.add_argument("--ema-decay", type=float, default=DEFAULT_EMA_DECAY,
                    help="decay of the weight EMA that is evaluated and exported (0: off)")
    ap.add_argument("--extra-train", action="append", default=[], metavar="PREFIX",
                    help="like --extra, but every crop trains (none held out), so the held-out "
                         "crops stay those of the --extra sets; repeatable")
    ap.add_argument("--extra-holdout", type=float, default=0.15,
                    help="share of the extra crops held out for calibration and test metrics")
    ap.add_argument("--init", metavar="ONNX", default=None,
                    help="fine-tune: start from this exported model (batch norm stays as folded into "
                         "its convolutions) instead of random weights; its held-out selection "
                         "accuracy is printed first, for comparison")
    ap.add_argument("--name", default=MODEL_NAME, help="model name written into the card")
    ap.add_argument("--evaluate", metavar="ONNX", default=None,
                    help="do not train: measure an exported model (e.g. one trained on another machine) "
                         "through onnxruntime on the same held-out sets, calibrate it and write its card")
    ap.add_argument("--trained-with", default=None, metavar="TEXT",
                    help="with --evaluate: the training command as it was run, for the card")
    ap.add_argument("--trained-on", default=None, metavar="TEXT",
                    help="with --evaluate: where it was trained (hardware, framework versions), for the card")
    ap.add_argument("--trained-seconds", type=float, default=0.0,
                    help="with --evaluate: wall seconds of the training run, for the card")
    args = ap.parse_args()
    t_start = time.time()
    if args.evaluate and not args.trained_with:
        raise SystemExit("--evaluate needs --trained-with (the command that trained the model)")

    import jax
    import jax.numpy as jnp
    import optax

    from rekap_train import model as arch
    from rekap_train.model import apply, count_params, export_onnx, init_params, params_from_onnx

    arch.CHANNELS = tuple(int(c) for c in args.channels.split(","))
    arch.HIDDEN = args.hidden
    if len(arch.CHANNELS) != 3:
        raise SystemExit("--channels needs three values (28 -> 14 -> 7 -> 3)")

    (xt, yt), (xv, yv) = train_val(args.mnist)
    xte, yte = load_split(args.mnist, "t10k")
    scale = 1.0
    if args.limit:
        scale = args.limit / len(xt)
        xt, yt = xt[: args.limit], yt[: args.limit]
        xv, yv, xte, yte = xv[:1000], yv[:1000], xte[:2000], yte[:2000]
    log(f"train {len(xt)}  held-out {len(xv)}  t10k {len(xte)}")

    # Pipeline crops (what `rekap process` feeds the model, from synth sets written with MNIST
    # *train* digits): mixed into every epoch; a held-out share calibrates and measures.
    xe_tr = np.zeros((0, 1, 28, 28), np.float32)
    ye_tr = np.zeros((0,), np.int64)
    xe_va, ye_va = xe_tr, ye_tr
    if args.extra:
        xs, ys_ = [], []
        for prefix in args.extra:
            xs.append(read_idx(prefix + "-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255.0)
            ys_.append(read_idx(prefix + "-labels-idx1-ubyte.gz").astype(np.int64))
        xe, ye = np.concatenate(xs), np.concatenate(ys_)
        perm = np.random.default_rng(424242).permutation(len(xe))
        n_va = int(len(xe) * args.extra_holdout)
        xe_va, ye_va = xe[perm[:n_va]], ye[perm[:n_va]]
        xe_tr, ye_tr = xe[perm[n_va:]], ye[perm[n_va:]]
        log(f"pipeline crops: train {len(xe_tr)}  held-out {len(xe_va)}  from {', '.join(args.extra)}")
    for prefix in args.extra_train:
        xe_tr = np.concatenate([xe_tr, read_idx(prefix + "-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255.0])
        ye_tr = np.concatenate([ye_tr, read_idx(prefix + "-labels-idx1-ubyte.gz").astype(np.int64)])
    if args.extra_train:
        log(f"pipeline crops: train {len(xe_tr)} with {', '.join(args.extra_train)} (train only)")

    ctx = mp.get_context("spawn")
    pool = ctx.Pool(args.workers)
    chunks = max(2, 2 * args.workers)
    n_test = max(200, int(SYNTH_TEST_EACH * min(1.0, 10 * scale)))
    held = {
        "val_aug": pool.apply_async(make_batch_args, ((SEED_VAL_AUG, xv, yv, n_test // 2, n_test // 2, 1.0, CLEAN_FRAC, None),)),
        "synth_test": pool.apply_async(make_batch_args, ((SEED_SYNTH_TEST, xv[:0], yv[:0], n_test, n_test, 1.0, 0.0, xv),)),
        "t10k_box": pool.apply_async(make_batch_args, ((SEED_T10K_BOX, xte, yte, 0, 0, 1.0, CLEAN_FRAC, None),)),
    }
    selection = {}

    def selection_set():
        """The held-out selection set (held-out MNIST clean and degraded + held-out pipeline
        crops): it picks EMA or last weights, calibrates the temperature and, between runs,
        chooses the model to ship. Built once, when first needed."""
        if not selection:
            va = held["val_aug"].get()
            selection["x"] = np.concatenate([val_clean, va[0], xe_va])
            selection["y"] = np.concatenate([yv, va[1], ye_va]).astype(np.int64)
        return selection["x"], selection["y"]

    # --evaluate trains nothing: no epochs, no EMA; the held-out sets above are the same
    n_epochs = 0 if args.evaluate else args.epochs
    if n_epochs:
        pending = pool.map_async(make_batch_args, epoch_jobs(0, xt, yt, chunks, scale, args.direct_frac, args.seed))

    # clean sets: the 28x28 MNIST image itself is the ink map (H = 28)
    val_clean = normalize_batch(xv.astype(np.float64) / 255.0)
    t10k_clean = normalize_batch(xte.astype(np.float64) / 255.0)

    key = jax.random.PRNGKey(args.seed)
    key, k = jax.random.split(key)
    params, state = init_params(k)
    init_sha = None
    if args.init:
        arch.FROZEN_BN = True
        params, state = params_from_onnx(args.init)
        with open(args.init, "rb") as fh:
            init_sha = hashlib.sha256(fh.read()).hexdigest()
    n_direct = sum(int(args.direct_frac * len(p)) for p in np.array_split(np.arange(len(xt)), chunks))
    n_per_epoch = (len(xt) + n_direct + int(X_PER_EPOCH * scale) // chunks * chunks
                   + int(BLANK_PER_EPOCH * scale) // chunks * chunks + len(xe_tr))
    steps_per_epoch = n_per_epoch // args.batch
    total = max(1, steps_per_epoch * n_epochs)
    sched = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(300, total // 10), total, args.lr * 0.005)
    decay_mask = jax.tree_util.tree_map_with_path(lambda p, _: p[-1].key == "w", params)
    opt = optax.adamw(sched, weight_decay=1e-4, mask=decay_mask)
    opt_state = opt.init(params)
    ema = params
    ema_decay = args.ema_decay if n_epochs else 0.0

    @jax.jit
    def step(params, state, opt_state, ema, t, x, y, key):
        def loss_fn(p):
            logits, new_state = apply(p, state, x, True, key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        # warm-up of the decay (as in TF's ExponentialMovingAverage with num_updates): the
        # average does not stay anchored to the random initial weights in short runs
        d = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
        ema = jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * p, ema, params)
        return params, new_state, opt_state, ema, loss

    fwd = jax.jit(lambda p, s, x: apply(p, s, x, False))
    batch_stats = jax.jit(lambda p, s, x, k: apply(p, s, x, True, k)[1])

    def logits_with(p, s, x, bs=1000):
        return np.concatenate([np.asarray(fwd(p, s, jnp.asarray(x[i : i + bs]))) for i in range(0, len(x), bs)])

    import onnxruntime as ort

    if args.evaluate:
        eval_sess = ort.InferenceSession(args.evaluate, providers=["CPUExecutionProvider"])

        def logits_of(x, bs=1000):
            return np.concatenate([eval_sess.run(["logits"], {"input": np.ascontiguousarray(x[i : i + bs], np.float32)})[0]
                                   for i in range(0, len(x), bs)])
    else:

        def logits_of(x, bs=1000):
            return logits_with(params, state, x, bs)

    if args.init:
        sel_x, sel_y = selection_set()
        acc_init = float((logits_with(params, state, sel_x).argmax(1) == sel_y).mean())
        clean_init = float((logits_with(params, state, val_clean).argmax(1) == yv).mean())
        log(f"--init {args.init}: held-out crops accuracy {acc_init:.4%} (clean {clean_init:.4%})")

    for epoch in range(n_epochs):
        t0 = time.time()
        parts = pending.get()
        if epoch + 1 < n_epochs:
            pending = pool.map_async(make_batch_args, epoch_jobs(epoch + 1, xt, yt, chunks, scale, args.direct_frac, args.seed))
        x_ep = np.concatenate([p[0] for p in parts] + [xe_tr])
        y_ep = np.concatenate([p[1] for p in parts] + [ye_tr.astype(parts[0][1].dtype)])
        perm = np.random.default_rng(args.seed * 7919 + epoch).permutation(len(x_ep))
        x_ep, y_ep = x_ep[perm], y_ep[perm]
        t_gen = time.time() - t0
        losses = []
        for i in range(steps_per_epoch):
            sl = slice(i * args.batch, (i + 1) * args.batch)
            key, k = jax.random.split(key)
            params, state, opt_state, ema, loss = step(params, state, opt_state, ema, jnp.float32(epoch * steps_per_epoch + i), jnp.asarray(x_ep[sl]), jnp.asarray(y_ep[sl]), k)
            losses.append(loss)
        mean_loss = float(np.mean(np.asarray(jax.device_get(losses))))
        acc = float((logits_of(val_clean).argmax(1) == yv).mean())
        log(f"epoch {epoch + 1}/{args.epochs}  loss {mean_loss:.4f}  held-out clean acc {acc:.4f}  "
            f"({time.time() - t0:.0f}s, waited {t_gen:.0f}s for data)")

    # ---------- weight EMA ----------
    # The EMA weights get their own batch-norm statistics: the mean of the per-batch statistics
    # over EMA_BN_BATCHES training batches of the last epoch (forward only, no update).
    # The EMA is used unless the last weights read the held-out crops (MNIST held-out clean and
    # degraded, held-out pipeline crops: the calibration set, never t10k) more accurately.
    if ema_decay > 0 and arch.FROZEN_BN:
        ema_state = state  # frozen (folded) batch norm: nothing to re-estimate
    if ema_decay > 0 and not arch.FROZEN_BN:
        sums = None
        nb_bn = min(EMA_BN_BATCHES, steps_per_epoch)
        for i in range(nb_bn):
            sl = slice(i * args.batch, (i + 1) * args.batch)
            key, k = jax.random.split(key)
            st = batch_stats(ema, state, jnp.asarray(x_ep[sl]), k)
            sums = st if sums is None else jax.tree_util.tree_map(jnp.add, sums, st)
        # batch_stats returns MOM*old + (1-MOM)*batch: undo the momentum to get the batch mean
        ema_state = jax.tree_util.tree_map(
            lambda sm, old: (sm / nb_bn - arch.BN_MOMENTUM * old) / (1 - arch.BN_MOMENTUM), sums, state)
    if ema_decay > 0:
        sel_x, sel_y = selection_set()
        acc_last = float((logits_with(params, state, sel_x).argmax(1) == sel_y).mean())
        acc_ema = float((logits_with(ema, ema_state, sel_x).argmax(1) == sel_y).mean())
        clean_last = float((logits_with(params, state, val_clean).argmax(1) == yv).mean())
        clean_ema = float((logits_with(ema, ema_state, val_clean).argmax(1) == yv).mean())
        use_ema = acc_ema >= acc_last
        log(f"held-out crops accuracy: last weights {acc_last:.4%} (clean {clean_last:.4%}), "
            f"EMA {acc_ema:.4%} (clean {clean_ema:.4%}); using {'EMA' if use_ema else 'last'} weights")
        if use_ema:
            params, state = ema, ema_state
    else:
        use_ema = False

    # ---------- evaluation & calibration ----------
    synth_test = held["synth_test"].get()
    t10k_box = held["t10k_box"].get()
    pool.close()
    pool.join()

    # Calibrate on what the pipeline sees most: held-out pipeline crops when given, plus the
    # held-out MNIST (clean and degraded).
    cal_x, cal_y = selection_set()
    cal_logits = logits_of(cal_x)
    # The same crops are the held-out selection set that picks EMA or last weights and, between
    # runs, the model to ship (training/README.md): its accuracy goes into the card.
    selection_acc = float((cal_logits.argmax(1) == cal_y).mean())
    log(f"held-out selection accuracy {selection_acc:.4%} ({len(cal_y)} crops)")
    temperature = fit_temperature(cal_logits, cal_y)
    ece_cal_before, rows_cal_b = reliability(cal_logits, cal_y, 1.0)
    ece_cal_after, rows_cal_a = reliability(cal_logits, cal_y, temperature)
    log(f"temperature {temperature:.4f} (fit on {len(cal_y)} held-out crops)")
    log(f"held-out ECE before {ece_cal_before:.4%} after {ece_cal_after:.4%}")

    lt_clean = logits_of(t10k_clean)
    lt_box = logits_of(t10k_box[0])
    ls_syn = logits_of(synth_test[0])
    pred_clean = lt_clean.argmax(1)
    t10k_acc = float((pred_clean == yte).mean())
    t10k_box_acc = float((lt_box.argmax(1) == t10k_box[1]).mean())
    per_class = {CLASSES[c]: float((pred_clean[yte == c] == c).mean()) for c in range(10)}
    ys = synth_test[1]
    ps = ls_syn.argmax(1)
    x_recall = float((ps[ys == X_CLASS] == X_CLASS).mean())
    blank_recall = float((ps[ys == BLANK_CLASS] == BLANK_CLASS).mean())
    # digits wrongly read as X / blank, on the box-crop t10k set
    pb = lt_box.argmax(1)
    digit_as_x = float((pb == X_CLASS).mean())
    digit_as_blank = float((pb == BLANK_CLASS).mean())

    test_logits = np.concatenate([lt_clean, lt_box, ls_syn])
    test_y = np.concatenate([yte, t10k_box[1], ys]).astype(np.int64)
    ece_before, rows_b = reliability(test_logits, test_y, 1.0)
    ece_after, rows_a = reliability(test_logits, test_y, temperature)
    print("Reliability on the test mix (t10k clean + t10k box crops + synthetic X/blank), T = 1:")
    print(format_table(rows_b))
    print(f"Reliability on the test mix, T = {temperature:.4f}:")
    print(format_table(rows_a))
    log(f"t10k clean accuracy {t10k_acc:.4%}   t10k box-crop accuracy {t10k_box_acc:.4%}")
    log(f"per-class t10k: " + " ".join(f"{k}:{v:.4f}" for k, v in per_class.items()))
    log(f"X recall {x_recall:.4%}  blank recall {blank_recall:.4%}  (synthetic, {n_test} each)")
    log(f"digit box crops read as X {digit_as_x:.4%}, as blank {digit_as_blank:.4%}")
    log(f"test-mix ECE before {ece_before:.4%} after {ece_after:.4%}")
    pipe = {}
    if len(xe_va):
        lp = logits_of(xe_va)
        pp = softmax(lp / temperature)
        pred_p, conf_p = pp.argmax(1), pp.max(1)
        ece_p, rows_p = reliability(lp, ye_va, temperature)
        print("Reliability on held-out pipeline crops (calibrated):")
        print(format_table(rows_p))
        pipe = {
            "pipeline_crops_heldout": int(len(ye_va)),
            "pipeline_crops_accuracy": round(float((pred_p == ye_va).mean()), 5),
            "pipeline_crops_x_recall": round(float((pred_p[ye_va == X_CLASS] == X_CLASS).mean()), 5),
            "pipeline_crops_blank_recall": round(float((pred_p[ye_va == BLANK_CLASS] == BLANK_CLASS).mean()), 5),
            "pipeline_crops_ece": round(float(ece_p), 5),
            "pipeline_crops_error_at_confidence": {
                str(t): {"coverage": round(float((conf_p >= t).mean()), 5),
                         "error": round(float((pred_p[conf_p >= t] != ye_va[conf_p >= t]).mean()) if (conf_p >= t).any() else 0.0, 6)}
                for t in (0.9, 0.99, 0.999)
            },
        }
        log(f"pipeline crops: accuracy {pipe['pipeline_crops_accuracy']:.4%}  X recall "
            f"{pipe['pipeline_crops_x_recall']:.4%}  blank recall {pipe['pipeline_crops_blank_recall']:.4%}  ECE {ece_p:.4%}")

    # ---------- export & verify ----------
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "digits.onnx")
    check_x = np.concatenate([t10k_clean[:2000], synth_test[0][:500], t10k_box[0][:500]])
    if args.evaluate:
        # every metric above already came from onnxruntime; ship the evaluated file as is
        if os.path.abspath(args.evaluate) != os.path.abspath(onnx_path):
            shutil.copyfile(args.evaluate, onnx_path)
        sess = eval_sess
    else:
        export_onnx(params, state, onnx_path)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        ort_logits = sess.run(["logits"], {"input": check_x})[0]
        diff = float(np.abs(ort_logits - logits_of(check_x)).max())
        same_argmax = bool((ort_logits.argmax(1) == logits_of(check_x).argmax(1)).all())
        log(f"onnxruntime {ort.__version__}: max |logit diff| vs JAX {diff:.2e}, same argmax {same_argmax}")
        if diff > ORT_PARITY_TOL:
            raise SystemExit("ONNX export disagrees with the JAX model")
    one = sess.run(["logits"], {"input": check_x[:1]})[0]
    assert one.shape == (1, 12)  # dynamic batch
    with open(onnx_path, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()

    wall = time.time() - t_start
    card = {
        "schema": "rekap-model/1",
        "name": args.name,
        "classes": CLASSES,
        "input": {"name": "input", "shape": [-1, 1, 28, 28], "dtype": "float32", "preprocessing": "rekap-mnist-v1"},
        "output": {"name": "logits"},
        "temperature": round(temperature, 6),
        "sha256": sha,
        "training": {
            "data": ("MNIST training split (60k images; 6k held out for validation and temperature "
                     "calibration) by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, "
                     "CC BY-SA 3.0, rendered as degraded box crops; synthetic X and blank boxes "
                     "generated by training/rekap_train/synth.py. t10k used only for test metrics."
                     + (" Plus box crops cut by `rekap crops` (the pipeline's own alignment and "
                        "segmentation) from rekap synth photos written with MNIST train digits."
                        if args.extra or args.extra_train else "")),
            "licence": "model weights: derived from MNIST (CC BY-SA 3.0); code: the repository's licence",
            # the command as run (train.py is documented to be started with nice from the root)
            "command": args.trained_with or ("nice training/.venv/bin/python " + shlex.join(sys.argv)),
            "framework": args.trained_on or f"jax {jax.__version__}, optax {optax.__version__}; exported with onnx, verified with onnxruntime {ort.__version__}",
            "epochs": args.epochs,
            "architecture": (f"[conv3x3-BN-ReLU-maxpool2] x 3 ({args.channels} channels), "
                             f"dense {args.hidden} + ReLU, dense 12"),
            **({"init": {"file": os.path.basename(args.init), "sha256": init_sha,
                         "note": "fine-tuned from this model; its batch norm stayed folded (frozen)"}}
               if args.init else {}),
            "weights": ("as exported by the training run (see framework)" if args.evaluate
                        else f"exponential moving average of the weights (decay {ema_decay})" if use_ema
                        else "weights after the last step"),
            "wall_seconds": round(args.trained_seconds if args.evaluate else wall),
            **({"metrics_measured": ("every metric below through onnxruntime "
                                     f"{ort.__version__} on CPU: nice training/.venv/bin/python "
                                     + shlex.join(sys.argv))} if args.evaluate else {}),
        },
        "metrics": {
            "mnist_t10k_accuracy": round(t10k_acc, 5),
            "mnist_t10k_box_crop_accuracy": round(t10k_box_acc, 5),
            "x_recall": round(x_recall, 5),
            "blank_recall": round(blank_recall, 5),
            "digit_read_as_x_rate": round(digit_as_x, 5),
            "digit_read_as_blank_rate": round(digit_as_blank, 5),
            "ece_before": round(ece_before, 5),
            "ece_after": round(ece_after, 5),
            "ece_heldout_before": round(ece_cal_before, 5),
            "ece_heldout_after": round(ece_cal_after, 5),
            "heldout_selection_accuracy": round(selection_acc, 6),
            "per_class_t10k_accuracy": {k: round(v, 5) for k, v in per_class.items()},
            "parameters": count_params(params),
            "onnx_bytes": os.path.getsize(onnx_path),
            "notes": ("x/blank recall on held-out synthetic box crops; ece_* on the test mix "
                      "(t10k clean + t10k box crops + synthetic X/blank), 10 equal-width bins; "
                      "pipeline_crops_* on held-out crops cut by `rekap crops` from rekap synth photos"),
            **pipe,
        },
    }
    with open(os.path.join(args.out, "digits.json"), "w") as fh:
        json.dump(card, fh, indent=2)
        fh.write("\n")
    log(f"wrote {onnx_path} ({os.path.getsize(onnx_path)} bytes, sha256 {sha[:16]}...) and digits.json; wall {wall:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
