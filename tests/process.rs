//! `rekap process` end to end on the bundled synthetic photos: golden results, bad input of
//! every kind, duplicated/missing/rotated pages, and the no-silent-error property against truth.
//!
//! Golden file: `testdata/golden/process.json` holds, per submission, the status, every field's
//! value and status, and the sorted flag codes. Regenerate after an intended change with
//! `REKAP_UPDATE_GOLDEN=1 cargo test --release --test process`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `rekap process` on `paths`; returns (exit code, results by submission).
fn process(paths: &[PathBuf], extra: &[&str]) -> (i32, BTreeMap<String, Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("results.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .current_dir(root())
        .arg("process")
        .args(paths)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .args(extra)
        .status()
        .expect("rekap runs");
    let text = std::fs::read_to_string(&out).expect("results written");
    let mut by = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("valid JSON line");
        by.insert(v["submission"].as_str().expect("name").to_string(), v);
    }
    (status.code().unwrap_or(-1), by)
}

fn flag_codes(r: &Value) -> Vec<String> {
    let mut v: Vec<String> = r["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn summary(r: &Value) -> Value {
    let fields: BTreeMap<String, Value> = r["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .map(|(k, f)| {
            (
                k.clone(),
                serde_json::json!({"value": f["value"], "status": f["status"]}),
            )
        })
        .collect();
    serde_json::json!({
        "status": r["status"],
        // The settings the fields were judged with: a change of them shows in the golden diff.
        "settings": r["settings"],
        "pages": r["pages"].as_array().map(|p| p.iter().map(|p| p["page"].clone()).collect::<Vec<_>>()),
        "fields": fields,
        "flags": flag_codes(r),
    })
}

#[test]
fn golden_results_on_bundled_data() {
    let (code, results) = process(&[root().join("testdata/synth")], &[]);
    assert_eq!(code, 0, "every bundled photo is readable");
    assert_eq!(results.len(), 6);
    let got: BTreeMap<String, Value> = results
        .iter()
        .map(|(k, v)| (k.clone(), summary(v)))
        .collect();
    let golden_path = root().join("testdata/golden/process.json");
    if std::env::var_os("REKAP_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_path.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &golden_path,
            serde_json::to_string_pretty(&got).expect("json") + "\n",
        )
        .expect("write golden");
        eprintln!("updated {}", golden_path.display());
        return;
    }
    let want: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(&golden_path)
            .expect("golden file exists (REKAP_UPDATE_GOLDEN=1 to create)"),
    )
    .expect("golden parses");
    for (name, w) in &want {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("submission {name} missing"));
        assert_eq!(
            g, w,
            "submission {name} differs from golden (REKAP_UPDATE_GOLDEN=1 to accept)"
        );
    }
    assert_eq!(want.len(), got.len());
}

/// A page identified by its tag but with too few marks to be read (one bundled photo has a
/// corner cut off): it is named, not read, and its fields say why they are missing.
#[test]
fn identified_but_unread_pages_say_why() {
    let template =
        rekap::template::Template::load(&root().join(rekap::template::DEFAULT_TEMPLATE_PATH))
            .expect("template");
    let (_, results) = process(&[root().join("testdata/synth")], &[]);
    let mut seen = 0;
    for r in results.values() {
        for p in r["pages"].as_array().expect("pages") {
            let used = p["alignment"]["squares_used"].as_u64();
            if used.is_none_or(|u| u >= rekap::pipeline::MIN_SQUARES_TO_READ as u64) {
                continue;
            }
            seen += 1;
            let page = p["page"].as_u64().expect("identified") as u32;
            assert!(
                p["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("identified by its tag")),
                "{p}"
            );
            assert!(flag_codes(r).contains(&"alignment_poor".to_string()));
            assert!(!flag_codes(r).contains(&"page_missing".to_string()), "{r}");
            for f in template.fields.iter().filter(|f| f.page == page) {
                let Some(fr) = r["fields"].get(&f.id) else {
                    continue;
                };
                assert_eq!(fr["status"], "missing", "{}", f.id);
                let flags: Vec<&str> = fr["flags"]
                    .as_array()
                    .expect("flags")
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect();
                assert!(flags.contains(&"alignment_poor"), "{}: {flags:?}", f.id);
                assert!(!flags.contains(&"page_missing"), "{}: {flags:?}", f.id);
            }
        }
    }
    assert!(seen >= 1, "the bundled data holds such a page");
}

/// The principle that matters most: no accepted field differs from what is on paper.
#[test]
fn no_accepted_field_is_wrong_on_bundled_data() {
    let (_, results) = process(&[root().join("testdata/synth")], &[]);
    let mut accepted = 0;
    for (name, r) in &results {
        let truth: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join(format!("testdata/synth/{name}/truth.json")))
                .expect("truth"),
        )
        .expect("truth json");
        for (id, f) in r["fields"].as_object().expect("fields") {
            if f["status"] == "accepted" {
                accepted += 1;
                assert_eq!(
                    f["value"], truth["fields"][id]["value"],
                    "{name} {id}: accepted {} but the paper says {}",
                    f["value"], truth["fields"][id]["value"]
                );
            }
        }
        // Every recorded officer error is flagged with its rule.
        for e in truth["officer_errors"].as_array().into_iter().flatten() {
            if let Some(rule) = e["rule"].as_str() {
                assert!(
                    r["flags"]
                        .as_array()
                        .expect("flags")
                        .iter()
                        .any(|f| f["rule"] == rule),
                    "{name}: officer error {rule} not flagged"
                );
            }
        }
    }
    assert!(accepted > 0, "some fields are accepted");
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

#[test]
fn bad_input_is_flagged_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = root().join("testdata/synth/s0001");
    // Submission "dup": page 1 twice, page 3 missing, page 2 turned upside down.
    let dup = dir.path().join("dup");
    std::fs::create_dir(&dup).expect("mkdir");
    copy(&src.join("page1.jpg"), &dup.join("a.jpg"));
    copy(&src.join("page1.jpg"), &dup.join("b.jpg"));
    let p2 = image::open(src.join("page2.jpg"))
        .expect("page2")
        .rotate180();
    p2.save(dup.join("c.jpg")).expect("save rotated");
    // Submission "bad": 0-byte, truncated, not an image, a PNG bomb, a photo of something else.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("empty.jpg"), b"").expect("write");
    let bytes = std::fs::read(src.join("page3.jpg")).expect("read");
    std::fs::write(bad.join("truncated.jpg"), &bytes[..bytes.len() / 2]).expect("write");
    std::fs::write(bad.join("notes.png"), b"this is not a picture").expect("write");
    std::fs::write(bad.join("bomb.png"), png_bomb()).expect("write");
    let noise = image::GrayImage::from_fn(900, 1200, |x, y| {
        image::Luma([((x * 31 + y * 17 + x * y) % 251) as u8])
    });
    noise.save(bad.join("cat.png")).expect("save");

    let (code, results) = process(&[dir.path().to_path_buf()], &[]);
    assert_ne!(code, 0, "unreadable files make the exit status non-zero");
    assert_eq!(results.len(), 2, "both submissions reported");

    let d = &results["dup"];
    let codes = flag_codes(d);
    assert!(codes.contains(&"page_duplicate".into()), "{codes:?}");
    assert!(codes.contains(&"page_missing".into()), "{codes:?}");
    let pages: Vec<Value> = d["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| p["page"].clone())
        .collect();
    assert_eq!(pages.iter().filter(|p| **p == 1).count(), 2);
    assert!(
        pages.contains(&Value::from(2)),
        "upside-down page 2 identified: {pages:?}"
    );
    let rot = d["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .find(|p| p["page"] == 2)
        .expect("page 2");
    let deg = rot["alignment"]["rotation_deg"].as_f64().expect("rotation");
    assert!((deg - 180.0).abs() < 15.0, "rotation {deg}");
    for f in d["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .filter(|(k, _)| ["valid", "invalid", "total"].contains(&k.as_str()))
    {
        assert_eq!(f.1["status"], "missing", "{} on the missing page", f.0);
    }

    let b = &results["bad"];
    assert_eq!(b["status"], "failed");
    let codes = flag_codes(b);
    assert_eq!(
        codes.iter().filter(|c| *c == "unreadable_file").count(),
        4,
        "{codes:?}"
    );
    assert!(codes.contains(&"not_a_form".into()), "{codes:?}");
    for p in b["pages"].as_array().expect("pages") {
        assert!(p["error"].is_string(), "every bad file has its error: {p}");
        // Named by its bytes even when unreadable (0-byte and truncated files, the bomb).
        let bytes = std::fs::read(p["file"].as_str().expect("file")).expect("the file is there");
        assert_eq!(p["sha256"], rekap::load::sha256_hex(&bytes).as_str(), "{p}");
    }
}

/// The grey image of a bundled page exactly as `rekap process` decodes it, as a lossless WebP.
fn webp_of(page: &Path) -> Vec<u8> {
    let photo = rekap::load::load_photo(page).expect("bundled page decodes");
    let mut out = Vec::new();
    photo
        .gray
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::WebP,
        )
        .expect("WebP encodes");
    out
}

#[test]
fn phone_and_scanner_formats_are_read_or_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = root().join("testdata/synth/s0001");
    // Submission "webp": page 1 as a WebP saved without an extension (a browser upload), page 2
    // as page2.webp, page 3 as a JPEG named .jfif (as Windows saves some), beside the truth file.
    let webp = dir.path().join("webp");
    std::fs::create_dir(&webp).expect("mkdir");
    std::fs::write(webp.join("upload-1"), webp_of(&src.join("page1.jpg"))).expect("write");
    std::fs::write(webp.join("page2.webp"), webp_of(&src.join("page2.jpg"))).expect("write");
    copy(&src.join("page3.jpg"), &webp.join("page3.jfif"));
    copy(&src.join("truth.json"), &webp.join("truth.json"));
    // Submission "iphone": an HEIC photo and a PDF scan, which rekap does not decode.
    let iphone = dir.path().join("iphone");
    std::fs::create_dir(&iphone).expect("mkdir");
    std::fs::write(
        iphone.join("IMG_0001.HEIC"),
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0meta",
    )
    .expect("write");
    std::fs::write(iphone.join("scan.pdf"), b"%PDF-1.7\n1 0 obj\n").expect("write");

    let (code, results) = process(&[dir.path().to_path_buf()], &[]);
    let (ref_code, reference) = process(std::slice::from_ref(&src), &[]);
    assert_ne!(code, 0, "the HEIC and the PDF could not be processed");
    assert_eq!(ref_code, 0);
    assert_eq!(
        results.len(),
        2,
        "both submissions reported: {:?}",
        results.keys()
    );

    let w = &results["webp"];
    let pages = w["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 3, "the truth file is not a page: {pages:?}");
    let ref_pages = reference["s0001"]["pages"].as_array().expect("pages");
    for p in pages {
        // Decoded, identified, and judged as the JPEG original (bundled page 3 has a corner cut
        // off, so both say why its numbers are not read).
        let r = ref_pages
            .iter()
            .find(|r| r["page"] == p["page"])
            .unwrap_or_else(|| panic!("page {} as in the reference", p["page"]));
        assert_eq!(p["error"], r["error"], "{p}");
        assert_eq!(p["alignment"]["good"], r["alignment"]["good"], "{p}");
    }
    let mut numbers: Vec<i64> = pages.iter().filter_map(|p| p["page"].as_i64()).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3]);
    // The same grey levels as the JPEGs: the same reading of every field.
    assert_eq!(
        summary(w)["fields"],
        summary(&reference["s0001"])["fields"],
        "WebP pages are read as their JPEG originals"
    );

    let i = &results["iphone"];
    assert_eq!(i["status"], "failed");
    let codes = flag_codes(i);
    // Each file says why it was not read, and the three pages are reported missing.
    assert_eq!(
        codes,
        [
            "page_missing",
            "page_missing",
            "page_missing",
            "unreadable_file",
            "unreadable_file"
        ],
        "{codes:?}"
    );
    let errors: Vec<&str> = i["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .filter_map(|p| p["error"].as_str())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("HEIC") && e.contains("JPEG")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("pdftoppm")), "{errors:?}");
}

/// A valid PNG (correct CRCs) whose header claims 30000 x 30000 pixels.
fn png_bomb() -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A tiny deflate stream of zeros (decompresses far beyond its size if allowed to).
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![0u8; 1 << 20]).expect("deflate");
    chunk(&mut out, b"IDAT", &enc.finish().expect("finish"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Boxes read at the trusted-blank confidence (`decide::QUIET_BLANK_CONFIDENCE`: their crop was
/// quiet) in one submission's results.
fn quiet_boxes(r: &Value) -> usize {
    let trusted = f64::from(rekap::decide::QUIET_BLANK_CONFIDENCE);
    r["fields"]
        .as_object()
        .expect("fields")
        .values()
        .flat_map(|f| f["boxes"].as_array().cloned().unwrap_or_default())
        .filter(|b| {
            b["label"] == "blank"
                && b["confidence"]
                    .as_f64()
                    .is_some_and(|c| (c - trusted).abs() < 1e-6)
        })
        .count()
}

#[test]
fn a_page_photographed_too_coarsely_trusts_no_empty_box() {
    // Bundled page 1 of s0001 (about 2 px per mm), alone and shrunk to 70 % (about 1.4 px
    // per mm, under segment::QUIET_MIN_PX_PER_MM): the same handwriting, but at the smaller
    // size a vanished stroke could leave no trace, so no empty box may be trusted there.
    let dir = tempfile::tempdir().expect("tempdir");
    let page = root().join("testdata/synth/s0001/page1.jpg");
    let img = image::open(&page).expect("bundled page");
    let (w, h) = (img.width(), img.height());
    let small = img.resize_exact(
        w * 7 / 10,
        h * 7 / 10,
        image::imageops::FilterType::Triangle,
    );
    let (full_dir, small_dir) = (dir.path().join("full"), dir.path().join("small"));
    std::fs::create_dir_all(&full_dir).expect("mkdir");
    std::fs::create_dir_all(&small_dir).expect("mkdir");
    copy(&page, &full_dir.join("page1.jpg"));
    small
        .to_rgb8()
        .save_with_format(small_dir.join("page1.jpg"), image::ImageFormat::Jpeg)
        .expect("write small page");
    let (_, by) = process(&[full_dir, small_dir], &[]);
    let scale = |r: &Value| {
        r["pages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["page"] == 1))
            .and_then(|p| p["alignment"]["px_per_mm"].as_f64())
            .expect("page 1 aligned")
    };
    let (full, small) = (&by["full"], &by["small"]);
    assert!(
        scale(full) >= rekap::segment::QUIET_MIN_PX_PER_MM,
        "{}",
        scale(full)
    );
    assert!(
        scale(small) < rekap::segment::QUIET_MIN_PX_PER_MM,
        "{}",
        scale(small)
    );
    assert!(
        quiet_boxes(full) > 0,
        "the full-size page trusts its empty boxes"
    );
    assert_eq!(quiet_boxes(small), 0);
}
