//! `rekap classify` end to end on the built binary with the tiny test model
//! (testdata/models/tiny.onnx, a fixed Gemm; see testdata/models/make_tiny.py).
//! Tests that run the model need ONNX Runtime (scripts/fetch-onnxruntime.sh); with
//! REKAP_SKIP_ORT=1 they are skipped, otherwise a missing runtime fails them.

use image::{GrayImage, Luma};
use rekap::recognize::{Label, Model, NUM_CLASSES, Prediction};
use rekap::segment::normalize::{DigitTensor, ink_map_from_gray, normalize};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod serve_support;

fn skip_ort() -> bool {
    let skip = std::env::var("REKAP_SKIP_ORT").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("REKAP_SKIP_ORT=1: skipping a test that needs ONNX Runtime");
    }
    skip
}

fn tiny_card() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/tiny.json")
}

fn rekap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekap"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run rekap")
}

/// A stroke of dark ink on light paper: a vertical bar plus a diagonal from `(dx, 0)`.
fn stroke_crop(dx: u32) -> GrayImage {
    GrayImage::from_fn(40, 50, |x, y| {
        let on_bar = (18..22).contains(&x) && (5..45).contains(&y);
        let on_diag = (x as i64 - dx as i64 - (y as i64) / 2).abs() < 2 && y < 30;
        Luma([if on_bar || on_diag { 25 } else { 225 }])
    })
}

/// What the tiny model answers for a crop, computed in-process through the library (the
/// FakeModel-free path: normalise, then the reference Gemm of make_tiny.py).
fn expected_prediction(img: &GrayImage) -> Prediction {
    let t: DigitTensor = normalize(&ink_map_from_gray(img));
    let logits: [f32; NUM_CLASSES] = std::array::from_fn(|k| {
        let mut s = (k as f64 - 5.0) / 10.0;
        for (p, &v) in t.iter().enumerate() {
            s += v as f64 * ((((p * 7 + k * 13) % 17) as f64) - 8.0) / 100.0;
        }
        s as f32
    });
    Prediction::from_logits(&logits, 1.0)
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A valid PNG whose header claims `w` x `h` pixels but holds no pixel data: a decoder that
/// does not check the size before allocating would try to allocate `w * h` bytes.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    GrayImage::new(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    // Signature (8) + IHDR length (4) + "IHDR" (4), then width and height.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]); // chunk type + 13 data bytes
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

#[test]
fn classifies_png_and_jpeg_crops_as_json() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blank = GrayImage::from_pixel(40, 50, Luma([220]));
    let a = stroke_crop(4);
    let b = stroke_crop(20);
    blank.save(dir.path().join("blank.png")).unwrap();
    a.save(dir.path().join("a.png")).unwrap();
    b.save(dir.path().join("b.png")).unwrap();
    image::DynamicImage::ImageLuma8(a.clone())
        .to_rgb8()
        .save(dir.path().join("a.jpg"))
        .unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let card = tiny_card().display().to_string();
    let out = rekap(&[
        "classify",
        &p("blank.png"),
        &p("a.png"),
        &p("b.png"),
        &p("a.jpg"),
        "--model",
        &card,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["file"], p("blank.png"));
    assert_eq!(lines[0]["label"], "blank");
    for (line, img) in [(&lines[1], &a), (&lines[2], &b)] {
        let want = expected_prediction(img);
        assert_eq!(line["label"], want.label.to_string(), "{line}");
        let conf = line["confidence"].as_f64().unwrap();
        assert!((conf - want.confidence as f64).abs() < 1e-4, "{line}");
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        for (k, alt) in top.iter().enumerate() {
            assert_eq!(alt["label"], want.top[k].0.to_string(), "{line}");
        }
    }
    // The JPEG of `a` is read through the same path (its values differ slightly from the PNG).
    assert!(lines[3]["label"].is_string() && lines[3].get("error").is_none());
    // The two drawings differ enough for the tiny model to tell them apart.
    assert_ne!(expected_prediction(&a).top, expected_prediction(&b).top);
}

#[test]
fn folders_are_searched_recursively_in_sorted_order() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
    let img = stroke_crop(8);
    img.save(dir.path().join("z.png")).unwrap();
    img.save(dir.path().join("b/c/y.PNG")).unwrap();
    img.save(dir.path().join("b/x.png")).unwrap();
    std::fs::write(dir.path().join("b/notes.txt"), "not a crop").unwrap();
    let out = rekap(&[
        "classify",
        &dir.path().display().to_string(),
        "--model",
        &tiny_card().display().to_string(),
        "--json",
        "--top",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| {
            assert_eq!(l["top"].as_array().unwrap().len(), 1);
            l["file"].as_str().unwrap().to_string()
        })
        .collect();
    let rel: Vec<String> = files
        .iter()
        .map(|f| {
            Path::new(f)
                .strip_prefix(dir.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(rel, ["b/c/y.PNG", "b/x.png", "z.png"]);
}

#[test]
fn bad_crops_are_reported_and_the_rest_go_on() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(dir.path().join("empty.png"), b"").unwrap();
    std::fs::write(dir.path().join("text.png"), b"hello, not an image").unwrap();
    std::fs::write(dir.path().join("bomb.png"), png_bomb(100_000, 100_000)).unwrap();
    GrayImage::from_pixel(4097, 2, Luma([255]))
        .save(dir.path().join("wide.png"))
        .unwrap();
    stroke_crop(6).save(dir.path().join("good.png")).unwrap();
    let card = tiny_card().display().to_string();
    let names = [
        "empty.png",
        "text.png",
        "bomb.png",
        "wide.png",
        "missing.png",
        "good.png",
    ];
    let mut args = vec!["classify".to_string()];
    args.extend(names.iter().map(|n| p(n)));
    args.extend(["--model".into(), card, "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rekap(&args);
    assert!(
        !out.status.success(),
        "exit status must report the failures"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5 of 6 crops could not be classified"),
        "{stderr}"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6);
    for (line, name) in lines.iter().zip(names) {
        assert_eq!(line["file"], p(name));
    }
    let err = |i: usize| lines[i]["error"].as_str().unwrap_or("").to_string();
    assert!(err(0).contains("empty"), "{}", err(0));
    assert!(!err(1).is_empty());
    assert!(err(2).to_lowercase().contains("limit"), "{}", err(2));
    assert!(err(3).to_lowercase().contains("limit"), "{}", err(3));
    assert!(err(4).contains("no such file"), "{}", err(4));
    assert!(lines[5].get("error").is_none());
    assert_eq!(
        lines[5]["label"],
        expected_prediction(&stroke_crop(6)).label.to_string()
    );
}

#[test]
fn table_output_lists_label_confidence_and_top() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.png");
    GrayImage::from_pixel(30, 30, Luma([240]))
        .save(&path)
        .unwrap();
    let out = rekap(&[
        "classify",
        &path.display().to_string(),
        "--model",
        &tiny_card().display().to_string(),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows[0], "file\tlabel\tconfidence\ttop");
    let cols: Vec<&str> = rows[1].split('\t').collect();
    assert_eq!(cols[0], path.display().to_string());
    assert_eq!(cols[1], "blank");
    assert_eq!(cols[3].split(' ').count(), 3);
    assert!(cols[3].starts_with("blank:"));
}

#[test]
fn missing_or_mismatched_model_is_a_clear_error() {
    // No runtime needed: the card and sha256 are checked before ONNX Runtime is loaded.
    let dir = tempfile::tempdir().unwrap();
    let crop = dir.path().join("c.png");
    stroke_crop(3).save(&crop).unwrap();
    let crop = crop.display().to_string();

    let missing = dir.path().join("none.json").display().to_string();
    let out = rekap(&["classify", &crop, "--model", &missing]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("none.json"), "{stderr}");

    let card_text = std::fs::read_to_string(tiny_card()).unwrap();
    let card: rekap::recognize::ModelCard = serde_json::from_str(&card_text).unwrap();
    std::fs::write(dir.path().join("digits.json"), &card_text).unwrap();
    let card_path = dir.path().join("digits.json").display().to_string();
    // Card without its .onnx: names the file and the expected sha256.
    let out = rekap(&["classify", &crop, "--model", &card_path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("digits.onnx") && stderr.contains(&card.sha256),
        "{stderr}"
    );
    // A different .onnx: names the file, expected and actual sha256.
    std::fs::write(dir.path().join("digits.onnx"), b"not the model").unwrap();
    let out = rekap(&["classify", &crop, "--model", &card_path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("digits.onnx"), "{stderr}");
    assert!(
        stderr.contains(&format!("expected {}", card.sha256)),
        "{stderr}"
    );
    assert!(stderr.contains("actual "), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "no crop may be classified with a bad model"
    );
}

#[test]
fn fake_model_is_usable_from_integration_tests() {
    let mut m = rekap::recognize::FakeModel::scripted(vec![Label::Digit(4), Label::X]);
    let preds = m.predict(&[[0.0; 784]; 2]).unwrap();
    assert_eq!(preds[0].label, Label::Digit(4));
    assert_eq!(preds[1].label, Label::X);
}

/// `rekap crops --true-geometry --score` cuts every truth box of the bundled synth set through
/// the truth homography and reads it with the shipped model: every box is there, and the
/// model reads the boxes of the bundled photos well (a broken cut or a mislabelled box would
/// drop the recall far below these floors).
#[test]
fn crops_true_geometry_score_counts_every_box() {
    if skip_ort() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("tg");
    let out = rekap(&[
        "crops",
        "--truth",
        root.join("testdata/synth").to_str().unwrap(),
        "--out",
        prefix.to_str().unwrap(),
        "--true-geometry",
        "--score",
        "--model",
        root.join("models/digits.json").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every box of every number field in the truth files.
    let mut expected = 0usize;
    for e in std::fs::read_dir(root.join("testdata/synth")).unwrap() {
        let p = e.unwrap().path().join("truth.json");
        if !p.exists() {
            continue;
        }
        let t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        for f in t["fields"].as_object().unwrap().values() {
            expected += f["boxes"].as_array().map_or(0, Vec::len);
        }
    }
    let score: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}-score.json", prefix.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(score["geometry"], "truth");
    let all = &score["all_pages"];
    assert_eq!(all["crops"].as_u64().unwrap() as usize, expected);
    let easy = &score["pages_without_hard_case"];
    assert!(easy["crops"].as_u64().unwrap() > 0);
    // Floors well under what model v5 reads there (95.7 / 99.5 / 92.9 %: 3 of only 42 blanks
    // missed), far over what a wrong cut or label order would give.
    for (key, floor) in [
        ("accuracy", 0.9),
        ("x_recall", 0.95),
        ("blank_recall", 0.85),
    ] {
        let v = easy[key].as_f64().unwrap();
        assert!(v >= floor, "{key} {v}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("blank recall"), "{stdout}");
    // Each crop's reading is in the meta file too, and the right ones add up to the accuracy.
    let meta = std::fs::read_to_string(format!("{}-meta.jsonl", prefix.display())).unwrap();
    let rows: Vec<serde_json::Value> = meta
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), expected);
    let right = rows.iter().filter(|r| r["read"] == r["label"]).count();
    let accuracy = all["accuracy"].as_f64().unwrap();
    assert!(
        (right as f64 / expected as f64 - accuracy).abs() < 1e-9,
        "{right} of {expected} vs {accuracy}"
    );
    for r in &rows {
        let c = r["read_confidence"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&c) && r["washed_out"].is_boolean(),
            "{r}"
        );
        // The runner-ups come with it, most probable first, the first being the reading.
        let top = r["read_top"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{r}");
        assert_eq!(top[0][0], r["read"], "{r}");
        assert_eq!(top[0][1].as_f64().unwrap(), c, "{r}");
        let ps: Vec<f64> = top.iter().map(|t| t[1].as_f64().unwrap()).collect();
        assert!(
            ps.windows(2).all(|w| w[0] >= w[1]) && ps.iter().sum::<f64>() <= 1.0 + 1e-6,
            "{r}"
        );
        assert!(top[1][0] != top[0][0] && top[2][0] != top[1][0], "{r}");
    }
}

/// `rekap crops --db`: the boxes of a reviewed field, cut from the stored photo as the pipeline
/// cuts them and labelled with the reviewer's value (digits right-aligned; a leading box takes
/// the machine's X or blank). Fields nobody reviewed give no crops.
#[test]
fn crops_from_reviewed_fields_carry_the_reviewers_digits() {
    use rekap::store::{ReviewAction, ReviewInput, Role, Store};
    if skip_ort() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let sub = root.join("testdata/synth/s0001");
    let out = rekap(&[
        "process",
        sub.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--out",
        dir.path().join("r.jsonl").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sub.join("truth.json")).unwrap()).unwrap();
    let mut store = Store::open(&db).unwrap();
    store
        .add_user(
            serve_support::REVIEWER,
            Role::Reviewer,
            serve_support::PASSWORD,
        )
        .unwrap();
    let sid = store.submissions().unwrap()[0].id;
    let report = store.report(sid).unwrap().unwrap();
    // A flagged three-box field whose truth has three digits: every box gets a digit label.
    let (field, value) = report
        .fields
        .iter()
        .filter(|(_, f)| f.status == rekap::decide::FieldStatus::Flagged && f.boxes.len() == 3)
        .find_map(|(id, _)| {
            let v = truth["fields"][id]["value"].as_i64()?;
            (v >= 100).then(|| (id.clone(), v))
        })
        .expect("a flagged three-digit field in s0001");
    let input = ReviewInput {
        action: ReviewAction::Correct,
        value: Some(value),
        reason: None,
    };
    serve_support::review_as(&mut store, serve_support::REVIEWER, sid, &field, &input);
    drop(store);
    let prefix = dir.path().join("rev");
    let out = rekap(&[
        "crops",
        "--db",
        db.to_str().unwrap(),
        "--out",
        prefix.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::read_to_string(format!("{}-meta.jsonl", prefix.display())).unwrap();
    let rows: Vec<serde_json::Value> = meta
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{meta}");
    let digits: Vec<String> = value.to_string().chars().map(String::from).collect();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["field"], field.as_str());
        assert_eq!(r["box"], i);
        assert_eq!(r["label"], digits[i].as_str(), "{r}");
        assert_eq!(r["label_source"], "reviewer");
    }
    // The IDX labels say the same.
    let mut labels = Vec::new();
    use std::io::Read as _;
    flate2::read::GzDecoder::new(
        std::fs::File::open(format!("{}-labels-idx1-ubyte.gz", prefix.display())).unwrap(),
    )
    .read_to_end(&mut labels)
    .unwrap();
    let want: Vec<u8> = digits.iter().map(|d| d.parse().unwrap()).collect();
    assert_eq!(&labels[8..], want.as_slice());
}
