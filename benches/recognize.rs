//! Digit-model throughput through ONNX Runtime: crops per second at batch 64 with one session
//! on one thread, and two sessions on two threads, and the ratio 2T/1T.
//!
//! Model: `$REKAP_BENCH_MODEL` (a card path) if set, else `models/digits.json` if present, else
//! the tiny test model (a single Gemm, which measures little beyond call overhead).
//! Run: `cargo bench --bench recognize` (add `-- --quick` for a short run). Criterion measures
//! one batch-64 call; the summary after it times whole runs and prints crops/s and the ratio.

use criterion::{Criterion, Throughput};
use rekap::recognize::{DEFAULT_BATCH_SIZE, Model, OrtModel};
use rekap::segment::normalize::{DigitTensor, InkMap, normalize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Crops per thread per timed run: 64 batches of 64.
const CROPS_PER_RUN: usize = 64 * DEFAULT_BATCH_SIZE;
/// Timed runs per configuration; the best is reported (the machine is shared, so the best run
/// is the least disturbed one).
const RUNS: usize = 5;

fn model_card() -> PathBuf {
    if let Some(p) = std::env::var_os("REKAP_BENCH_MODEL") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let real = root.join("models/digits.json");
    if real.exists() {
        real
    } else {
        root.join("testdata/models/tiny.json")
    }
}

/// Digit-like inputs: a few bright strokes per tensor, deterministic.
fn inputs(n: usize) -> Vec<DigitTensor> {
    (0..n)
        .map(|i| {
            let mut t = [0f32; 784];
            for y in 4..24 {
                let x = 8 + (y * (i % 7 + 1) / 7) % 12;
                t[y * 28 + x] = 1.0;
                t[y * 28 + x + 1] = 0.6;
            }
            t
        })
        .collect()
}

/// Crops per second with `threads` sessions, each on its own thread classifying
/// [`CROPS_PER_RUN`] crops in batches of 64; best of [`RUNS`].
fn throughput(card: &Path, threads: usize, data: &[DigitTensor]) -> f64 {
    let mut models: Vec<OrtModel> = (0..threads)
        .map(|_| OrtModel::open(card).expect("open model"))
        .collect();
    for m in &mut models {
        m.logits(&data[..DEFAULT_BATCH_SIZE]).expect("warm-up");
    }
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        std::thread::scope(|s| {
            for m in models.iter_mut() {
                s.spawn(move || {
                    let out = m.logits(data).expect("inference");
                    assert_eq!(out.len(), data.len());
                });
            }
        });
        best = best.min(start.elapsed());
    }
    (threads * data.len()) as f64 / best.as_secs_f64()
}

fn main() {
    let card = model_card();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let batch = inputs(DEFAULT_BATCH_SIZE);
    let mut model = OrtModel::open(&card).unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("recognize");
    group.throughput(Throughput::Elements(DEFAULT_BATCH_SIZE as u64));
    group.bench_function("ort_batch64_1thread", |b| {
        b.iter(|| model.logits(&batch).expect("inference"))
    });
    // The normalisation each crop goes through before the model (a 44 x 36 box, one stroke).
    let ink = InkMap::from_shape_fn((44, 36), |(y, x)| {
        if (8..36).contains(&y) && (x as i64 - 10 - y as i64 / 3).abs() < 2 {
            1.0
        } else {
            0.0
        }
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("normalize_44x36", |b| b.iter(|| normalize(&ink)));
    group.finish();
    c.final_summary();

    let data = inputs(CROPS_PER_RUN);
    let one = throughput(&card, 1, &data);
    let two = throughput(&card, 2, &data);
    println!("model: {} ({})", card.display(), model.card().name);
    println!(
        "cpus available: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("1 thread  (1 session):  {one:>10.0} crops/s");
    println!("2 threads (2 sessions): {two:>10.0} crops/s");
    println!("ratio 2T/1T: {:.2}", two / one);
}
