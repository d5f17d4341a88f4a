//! Rust/Python parity of the `rekap-mnist-v1` digit normalisation.
//!
//! Fixtures (written by `training/make_parity.py`): `testdata/parity/*.png` are ink maps stored
//! as 8-bit grey (`ink = pixel / 255`); `testdata/parity/expected.json` is a list of
//! `{"file": "<name>.png", "tensor": [784 floats]}` computed by the Python mirror
//! `training/rekap_train/preprocess.py`. Every fixture must agree within 1e-5, and every PNG in
//! the folder must have an expected tensor (no fixture is silently skipped).

use rekap::segment::normalize::{TENSOR_LEN, ink_map_from_ink_image, normalize};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest allowed absolute difference between the Rust and Python tensors.
const TOLERANCE: f32 = 1e-5;

#[derive(Deserialize)]
struct Expected {
    file: String,
    tensor: Vec<f32>,
}

fn parity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/parity")
}

#[test]
fn rust_normalize_matches_python_fixtures() {
    let dir = parity_dir();
    let json_path = dir.join("expected.json");
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); the fixtures come from training/make_parity.py",
            json_path.display()
        )
    });
    let expected: Vec<Expected> = serde_json::from_str(&text).expect("expected.json format");
    assert!(!expected.is_empty(), "expected.json lists no fixture");

    let mut pngs: Vec<String> = std::fs::read_dir(&dir)
        .expect("read parity dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".png"))
        .collect();
    pngs.sort();
    let mut listed: Vec<String> = expected.iter().map(|e| e.file.clone()).collect();
    listed.sort();
    assert_eq!(pngs, listed, "PNG files and expected.json entries differ");

    let mut failures = Vec::new();
    for case in &expected {
        assert_eq!(
            case.tensor.len(),
            TENSOR_LEN,
            "{}: tensor length",
            case.file
        );
        let img =
            image::open(dir.join(&case.file)).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert!(
            matches!(img, image::DynamicImage::ImageLuma8(_)),
            "{}: fixture must be 8-bit grey",
            case.file
        );
        let ink = ink_map_from_ink_image(&img.to_luma8());
        let got = normalize(&ink);
        let (worst_i, worst) = got
            .iter()
            .zip(&case.tensor)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold(
                (0, 0f32),
                |acc, (i, d)| if d > acc.1 { (i, d) } else { acc },
            );
        println!("{:34} max |diff| = {worst:.3e}", case.file);
        if worst > TOLERANCE || got.iter().any(|v| !v.is_finite()) {
            failures.push(format!(
                "{}: max |diff| {worst:.3e} at (y {}, x {}): rust {} python {}",
                case.file,
                worst_i / 28,
                worst_i % 28,
                got[worst_i],
                case.tensor[worst_i]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}
