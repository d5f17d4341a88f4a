//! ONNX Runtime provisioning and the ONNX model path end to end, on the tiny test model
//! `testdata/models/tiny.onnx` (a fixed Gemm 784 -> 12, see testdata/models/make_tiny.py).
//!
//! CI always provisions the runtime (scripts/fetch-onnxruntime.sh), so these tests FAIL when it
//! is missing; set REKAP_SKIP_ORT=1 to skip the ones that need it on a machine without it.

use rekap::recognize::runtime::{Candidates, ORT_LIBRARY_FILE, find_runtime};
use rekap::recognize::{Label, Model, ModelCard, ModelPool, NUM_CLASSES, OrtModel};
use std::path::{Path, PathBuf};

fn skip_ort() -> bool {
    if std::env::var("REKAP_SKIP_ORT").is_ok_and(|v| v == "1") {
        eprintln!("REKAP_SKIP_ORT=1: skipping a test that needs ONNX Runtime");
        return true;
    }
    false
}

fn tiny_card() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/tiny.json")
}

/// The tiny model's logits, recomputed from the formula in make_tiny.py.
fn tiny_reference(x: &[f32; 784]) -> [f32; NUM_CLASSES] {
    std::array::from_fn(|k| {
        let mut s = (k as f64 - 5.0) / 10.0;
        for (p, &v) in x.iter().enumerate() {
            let w = ((((p * 7 + k * 13) % 17) as f64) - 8.0) / 100.0;
            s += v as f64 * w;
        }
        s as f32
    })
}

fn pseudo_random_tensors(n: usize) -> Vec<[f32; 784]> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            std::array::from_fn(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 1000) as f32 / 1000.0
            })
        })
        .collect()
}

#[test]
fn runtime_loads() {
    if skip_ort() {
        return;
    }
    let path = rekap::recognize::runtime::ensure_loaded().unwrap_or_else(|e| panic!("{e}"));
    assert!(path.ends_with(ORT_LIBRARY_FILE) || std::env::var_os("ORT_DYLIB_PATH").is_some());
}

#[test]
fn missing_library_gives_the_documented_error() {
    let dir = tempfile::tempdir().unwrap();
    let candidates = Candidates::Search(vec![
        dir.path().join("x").join(ORT_LIBRARY_FILE),
        dir.path().join(".onnxruntime").join(ORT_LIBRARY_FILE),
    ]);
    let msg = find_runtime(&candidates).unwrap_err().to_string();
    assert!(msg.starts_with("ONNX Runtime library not found"), "{msg}");
    assert!(msg.contains("run scripts/fetch-onnxruntime.sh"), "{msg}");
    assert!(msg.contains("set ORT_DYLIB_PATH"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn tiny_model_matches_reference_logits() {
    if skip_ort() {
        return;
    }
    let mut model = OrtModel::open(&tiny_card()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.batch_size(), 64);
    // 150 inputs: three runs of 64, 64 and 22.
    let mut inputs = pseudo_random_tensors(150);
    inputs[0] = [0.0; 784];
    let logits = model.logits(&inputs).unwrap();
    assert_eq!(logits.len(), inputs.len());
    for (i, (got, x)) in logits.iter().zip(&inputs).enumerate() {
        let want = tiny_reference(x);
        for k in 0..NUM_CLASSES {
            assert!(
                (got[k] - want[k]).abs() < 1e-3,
                "input {i} class {k}: ort {} reference {}",
                got[k],
                want[k]
            );
        }
    }
    // All-zero input: logits = bias, whose argmax is "blank".
    let p = model.predict(&inputs[..1]).unwrap();
    assert_eq!(p[0].label, Label::Blank);
    assert_eq!(p[0].top[1].0, Label::X);
    assert!(model.logits(&[]).unwrap().is_empty());
}

#[test]
fn batch_size_does_not_change_results() {
    if skip_ort() {
        return;
    }
    let inputs = pseudo_random_tensors(70);
    let mut a = OrtModel::open(&tiny_card()).unwrap().with_batch_size(1);
    let mut b = OrtModel::open(&tiny_card()).unwrap().with_batch_size(64);
    let la = a.logits(&inputs).unwrap();
    let lb = b.logits(&inputs).unwrap();
    for (x, y) in la.iter().zip(&lb) {
        for k in 0..NUM_CLASSES {
            assert!((x[k] - y[k]).abs() < 1e-5);
        }
    }
}

#[test]
fn pool_runs_sessions_in_parallel_threads() {
    if skip_ort() {
        return;
    }
    let pool = ModelPool::ort(tiny_card(), 16).unwrap();
    let inputs = pseudo_random_tensors(200);
    let preds = pool.predict(&inputs).unwrap();
    let mut single = OrtModel::open(&tiny_card()).unwrap();
    let want = single.predict(&inputs).unwrap();
    assert_eq!(preds.len(), want.len());
    for (p, w) in preds.iter().zip(&want) {
        assert_eq!(p.label, w.label);
        assert!((p.confidence - w.confidence).abs() < 1e-5);
    }
}

#[test]
fn tampered_model_is_refused_before_loading() {
    // No runtime needed: the card check comes first.
    let dir = tempfile::tempdir().unwrap();
    let card_text = std::fs::read_to_string(tiny_card()).unwrap();
    let card: ModelCard = serde_json::from_str(&card_text).unwrap();
    let mut onnx = std::fs::read(tiny_card().with_extension("onnx")).unwrap();
    let last = onnx.len() - 1;
    onnx[last] ^= 1;
    std::fs::write(dir.path().join("digits.onnx"), &onnx).unwrap();
    std::fs::write(dir.path().join("digits.json"), &card_text).unwrap();
    let msg = OrtModel::open(&dir.path().join("digits.json"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("digits.onnx"), "{msg}");
    assert!(msg.contains(&card.sha256), "{msg}");
    assert!(msg.contains("sha256"), "{msg}");
}

#[test]
fn tiny_card_is_valid() {
    let (card, onnx, _) = ModelCard::load(&tiny_card()).unwrap();
    assert_eq!(card.name, "rekap-tiny-test");
    assert!(onnx.ends_with("tiny.onnx"));
}

/// A line segment `(from, to)` in pixel coordinates.
type Segment = ((f64, f64), (f64, f64));

/// A 40 x 50 grey crop (paper 225) with 4-pixel-wide dark strokes along the given segments.
fn drawing(segments: &[Segment]) -> image::GrayImage {
    image::GrayImage::from_fn(40, 50, |x, y| {
        let p = (x as f64 + 0.5, y as f64 + 0.5);
        let near = segments.iter().any(|&(a, b)| {
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
            let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
            (qx * qx + qy * qy).sqrt() <= 2.0
        });
        image::Luma([if near { 30 } else { 225 }])
    })
}

fn ring() -> Vec<Segment> {
    let pts: Vec<(f64, f64)> = (0..=24)
        .map(|k| {
            let a = k as f64 / 24.0 * std::f64::consts::TAU;
            (20.0 + 9.0 * a.cos(), 25.0 + 18.0 * a.sin())
        })
        .collect();
    pts.windows(2).map(|w| (w[0], w[1])).collect()
}

#[test]
fn shipped_model_reads_clear_drawings() {
    let card = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits.json");
    // The card and sha256 check needs no runtime.
    let (shipped, _, _) = ModelCard::load(&card).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shipped.input.preprocessing, "rekap-mnist-v1");
    if skip_ort() {
        return;
    }
    use rekap::segment::normalize::{ink_map_from_gray, normalize};
    let cases = [
        ("blank", drawing(&[])),
        ("0", drawing(&ring())),
        (
            "X",
            drawing(&[((8.0, 8.0), (32.0, 42.0)), ((32.0, 8.0), (8.0, 42.0))]),
        ),
        (
            "7",
            drawing(&[((8.0, 8.0), (32.0, 8.0)), ((32.0, 8.0), (16.0, 44.0))]),
        ),
        (
            "4",
            drawing(&[
                ((24.0, 6.0), (8.0, 32.0)),
                ((8.0, 32.0), (34.0, 32.0)),
                ((26.0, 18.0), (26.0, 44.0)),
            ]),
        ),
    ];
    let tensors: Vec<[f32; 784]> = cases
        .iter()
        .map(|(_, img)| normalize(&ink_map_from_gray(img)))
        .collect();
    let mut model = OrtModel::open(&card).unwrap_or_else(|e| panic!("{e}"));
    let preds = model.predict(&tensors).unwrap();
    for ((want, _), p) in cases.iter().zip(&preds) {
        assert_eq!(p.label.to_string(), *want, "{p:?}");
    }
    // An empty box reads as blank with high, not total, confidence: calibrated on pipeline
    // crops, where a faint digit occasionally normalises to an empty tensor too (the pipeline
    // flags such boxes separately, see `segment::is_doubtful`).
    assert!(preds[0].confidence > 0.95, "blank box: {:?}", preds[0]);
}
