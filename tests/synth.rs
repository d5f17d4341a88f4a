//! Integration tests of `rekap synth`: determinism, rule consistency of the truth, homography
//! accuracy on the registration marks, and clear errors for bad arguments.

use rekap::synth::camera::apply;
use rekap::synth::fill::{self, row_strokes};
use rekap::synth::idx::{DEFAULT_DIGITS_PATH, DigitBank};
use rekap::synth::truth::{FieldTruth, Truth};
use rekap::synth::{Generator, Options, SizeSpec, submission_rng};
use rekap::template::rules::RuleOutcome;
use rekap::template::{DEFAULT_TEMPLATE_PATH, Template};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

fn template() -> Template {
    Template::load(Path::new(DEFAULT_TEMPLATE_PATH)).unwrap()
}

fn generator(size: SizeSpec, hard: f64, errors: f64) -> Generator {
    screen_generator(size, hard, errors, 0.0)
}

fn screen_generator(size: SizeSpec, hard: f64, errors: f64, screen: f64) -> Generator {
    let bank = DigitBank::load(Path::new(DEFAULT_DIGITS_PATH)).unwrap();
    Generator::new(
        template(),
        bank,
        HashMap::new(),
        Options {
            size,
            hard_cases: hard,
            officer_errors: errors,
            screen,
        },
    )
    .unwrap()
}

/// Rule instances violated by `values`.
fn violated(t: &Template, values: &BTreeMap<String, Option<i64>>) -> BTreeSet<String> {
    let get = |f: &str| values.get(f).copied().flatten();
    t.rules()
        .iter()
        .filter(|r| matches!(r.evaluate(&get), RuleOutcome::Violated { .. }))
        .map(|r| r.id.clone())
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let g = generator(SizeSpec::Fixed(480, 640), 0.3, 0.5);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let a = one.install(|| g.submission(7, 3).unwrap());
    let b = two.install(|| g.submission(7, 3).unwrap());
    assert_eq!(
        serde_json::to_string(&a.truth).unwrap(),
        serde_json::to_string(&b.truth).unwrap()
    );
    assert_eq!(a.pages.len(), 3);
    for (pa, pb) in a.pages.iter().zip(&b.pages) {
        assert_eq!(pa.0, pb.0);
        assert!(pa.1 == pb.1, "JPEG bytes of {} differ", pa.0);
        assert_eq!(&pa.1[..2], &[0xFF, 0xD8], "not a JPEG");
    }
    let c = g.submission(8, 3).unwrap();
    assert_ne!(a.truth.fields, c.truth.fields);
    assert!(a.pages[0].1 != c.pages[0].1);
    // Another index of the same run differs too.
    let d = g.submission(7, 4).unwrap();
    assert_ne!(a.truth.fields, d.truth.fields);
}

#[test]
fn truth_satisfies_every_rule_except_recorded_errors() {
    let t = template();
    let mut with_error = 0;
    let mut kinds = BTreeSet::new();
    for i in 0..400 {
        let mut rng = submission_rng(11, i);
        let f = fill::fill(&t, &mut rng, 0.5).unwrap();
        let values = f.values();
        let bad = violated(&t, &values);
        let mut allowed = BTreeSet::new();
        for e in &f.officer_errors {
            kinds.insert(e.kind.clone());
            if let Some(r) = &e.rule {
                assert!(
                    bad.contains(r),
                    "submission {i}: recorded rule {r} holds: {e:?}"
                );
                allowed.insert(r.clone());
            }
            allowed.extend(e.also_breaks.iter().cloned());
        }
        assert!(f.officer_errors.len() <= 1);
        with_error += f.officer_errors.len();
        assert!(
            bad.is_subset(&allowed),
            "submission {i}: unrecorded violations {:?} (errors {:?})",
            bad.difference(&allowed).collect::<Vec<_>>(),
            f.officer_errors
        );
        // Every numeric field is filled, boxes agree with the value.
        for field in t.numeric_fields() {
            let n = &f.numbers[&field.id];
            assert_eq!(n.boxes.len(), field.boxes.len(), "{}", field.id);
            let v = n.value.unwrap();
            let digits: String = n
                .boxes
                .iter()
                .filter(|b| b.len() == 1 && *b != "X")
                .cloned()
                .collect();
            assert_eq!(
                digits.parse::<i64>().unwrap(),
                v,
                "{}: {:?}",
                field.id,
                n.boxes
            );
        }
        // Bubbles repeat the boxes unless the error is a bubble mismatch.
        let bubble_error = f.officer_errors.iter().any(|e| e.kind == "bubble_mismatch");
        for k in 1..=3 {
            let boxes = &f.numbers[&format!("votes.{k}")].boxes;
            let cols = &f.bubbles[&format!("votes.{k}.bubbles")];
            let agree = boxes.iter().zip(cols).all(|(b, c)| match b.parse::<u8>() {
                Ok(d) => c == &vec![d],
                Err(_) => c.is_empty() || c == &vec![0],
            });
            assert!(
                agree || bubble_error,
                "submission {i} votes.{k}: {boxes:?} vs {cols:?}"
            );
            // Tally strokes = votes, row totals = strokes per row (unless a row-total error).
            let count = f.tallies[&format!("votes.{k}.tally")];
            assert_eq!(
                count as i64,
                f.numbers[&format!("votes.{k}")].value.unwrap()
            );
            for row in 1..=5 {
                let id = format!("votes.{k}.row{row}");
                let written = f.numbers[&id].value.unwrap();
                let err = f.officer_errors.iter().any(|e| e.fields.contains(&id));
                assert!(err || written == row_strokes(count, row, 12) as i64, "{id}");
            }
        }
    }
    assert!(
        (120..=280).contains(&with_error),
        "{with_error} errors in 400 at rate 0.5"
    );
    for k in [
        "sum_mismatch",
        "row_total_mismatch",
        "count_over_300",
        "bubble_mismatch",
    ] {
        assert!(kinds.contains(k), "no officer error of kind {k}");
    }
    // Without officer errors nothing is violated.
    for i in 0..100 {
        let f = fill::fill(&t, &mut submission_rng(12, i), 0.0).unwrap();
        assert!(f.officer_errors.is_empty());
        assert!(violated(&t, &f.values()).is_empty());
    }
}

fn luminance(img: &image::RgbImage, x: f64, y: f64) -> Option<f64> {
    let (xi, yi) = (x.floor() as i64, y.floor() as i64);
    if xi < 0 || yi < 0 || xi >= img.width() as i64 || yi >= img.height() as i64 {
        return None;
    }
    let p = img.get_pixel(xi as u32, yi as u32).0;
    Some(0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
}

#[test]
fn homography_puts_registration_marks_on_dark_pixels() {
    let g = generator(SizeSpec::Fixed(960, 1280), 0.0, 0.15);
    let t = template();
    let mut checked = 0;
    for i in 0..2 {
        let s = g.submission(21, i).unwrap();
        let truth: Truth = serde_json::from_str(&serde_json::to_string(&s.truth).unwrap()).unwrap();
        for (pt, (file, jpeg)) in truth.pages.iter().zip(&s.pages) {
            assert_eq!(&pt.file, file);
            assert!(pt.conditions.hard.is_empty());
            let img = image::load_from_memory(jpeg).unwrap().to_rgb8();
            assert_eq!((img.width(), img.height()), (pt.width, pt.height));
            let h = nalgebra::Matrix3::from_row_slice(&pt.homography);
            let page = t.page(pt.page).unwrap();
            for m in &page.marks {
                for sq in &m.squares {
                    let c = apply(&h, sq[0] + sq[2] / 2.0, sq[1] + sq[3] / 2.0);
                    // Paper next to the mark: one square further out, away from the page centre.
                    let dx = if m.center[0] < page.width_mm / 2.0 {
                        -1.0
                    } else {
                        1.0
                    };
                    let paper_pt = [m.center[0] - dx * 2.5 * sq[2], m.center[1]];
                    let p = apply(&h, paper_pt[0], paper_pt[1]);
                    let dark = luminance(&img, c[0], c[1]).unwrap();
                    let paper = luminance(&img, p[0], p[1]).unwrap();
                    assert!(
                        dark < 0.6 * paper,
                        "{} page {} mark {}: centre {dark:.0} vs paper {paper:.0}",
                        s.name,
                        pt.page,
                        m.name
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 4 * 2);
}

#[test]
fn truth_json_has_documented_shape() {
    let g = generator(SizeSpec::Fixed(480, 640), 0.0, 0.0);
    let s = g.submission(1, 0).unwrap();
    let v: serde_json::Value = serde_json::to_value(&s.truth).unwrap();
    assert_eq!(v["schema"], "rekap-truth/1");
    assert_eq!(v["template"], "c-hasil-ppwp-2024");
    assert_eq!(v["submission"], "s0001");
    assert_eq!(v["pages"][0]["homography"].as_array().unwrap().len(), 9);
    assert!(v["fields"]["dpt.l"]["value"].is_i64());
    assert_eq!(v["fields"]["dpt.l"]["boxes"].as_array().unwrap().len(), 3);
    assert!(v["fields"]["votes.1.bubbles"]["filled"].is_array());
    assert!(v["fields"]["votes.1.tally"]["count"].is_u64());
    assert_eq!(v["fields"]["date.year"]["value"], 2024);
    assert!(v["officer_errors"].as_array().unwrap().is_empty());
    let back: Truth = serde_json::from_value(v).unwrap();
    assert!(matches!(
        back.fields["votes.2.tally"],
        FieldTruth::Tally { .. }
    ));
    assert!(matches!(
        back.fields["votes.2.bubbles"],
        FieldTruth::Bubbles { .. }
    ));
}

fn rekap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rekap"))
}

#[test]
fn cli_refuses_bad_size_and_unwritable_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = rekap()
        .args(["synth", "--count", "1", "--size", "huge", "--out"])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad --size `huge`"), "{err}");

    let out = rekap()
        .args(["synth", "--count", "1", "--size", "100x100", "--out"])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("each side must be"));

    // The output path is an existing file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = rekap()
        .args(["synth", "--count", "1", "--size", "3mp", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not a directory"), "{err}");

    // Below a file: cannot be created.
    let out = rekap()
        .args(["synth", "--count", "1", "--size", "3mp", "--out"])
        .arg(file.join("sub"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create the directory"), "{err}");
}

#[test]
fn cli_writes_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let out = rekap()
        .args([
            "synth", "--count", "2", "--seed", "3", "--size", "400x533", "--jobs", "2", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in ["s0001", "s0002"] {
        for f in ["page1.jpg", "page2.jpg", "page3.jpg", "truth.json"] {
            assert!(dir.path().join(s).join(f).is_file(), "{s}/{f}");
        }
        let t: Truth =
            serde_json::from_slice(&std::fs::read(dir.path().join(s).join("truth.json")).unwrap())
                .unwrap();
        assert_eq!(t.submission, s);
        assert_eq!(t.seed, 3);
    }
}

#[test]
fn blank_page_image_is_photographed() {
    // A plain grey "blank page" with a black top-left quarter: the photo must show it there.
    let mut img = image::RgbImage::from_pixel(120, 180, image::Rgb([200, 200, 200]));
    for y in 0..90 {
        for x in 0..60 {
            img.put_pixel(x, y, image::Rgb([0, 0, 0]));
        }
    }
    let bank = DigitBank::load(Path::new(DEFAULT_DIGITS_PATH)).unwrap();
    let g = Generator::new(
        template(),
        bank,
        HashMap::from([(1, img)]),
        Options {
            size: SizeSpec::Fixed(480, 640),
            hard_cases: 0.0,
            officer_errors: 0.0,
            screen: 0.0,
        },
    )
    .unwrap();
    let s = g.submission(5, 0).unwrap();
    let pt = &s.truth.pages[0];
    let photo = image::load_from_memory(&s.pages[0].1).unwrap().to_rgb8();
    let h = nalgebra::Matrix3::from_row_slice(&pt.homography);
    let dark = apply(&h, 150.0, 225.0);
    let light = apply(&h, 450.0, 675.0);
    let (d, l) = (
        luminance(&photo, dark[0], dark[1]).unwrap(),
        luminance(&photo, light[0], light[1]).unwrap(),
    );
    assert!(d < 0.4 * l, "dark quarter {d:.0} vs grey {l:.0}");
    // A page number the template lacks is refused.
    let bank = DigitBank::load(Path::new(DEFAULT_DIGITS_PATH)).unwrap();
    let bad = Generator::new(
        template(),
        bank,
        HashMap::from([(9, image::RgbImage::new(10, 10))]),
        Options::default(),
    );
    assert!(bad.is_err());
}

/// Page 1's digit boxes cut through the truth homography, as `segment::cut_page` reads them.
fn page1_crops(sub: &rekap::synth::Submission, t: &Template) -> rekap::segment::PageCrops {
    let pt = &sub.truth.pages[0];
    let bytes = &sub.pages.iter().find(|p| p.0 == pt.file).unwrap().1;
    let gray = image::load_from_memory(bytes).unwrap().to_luma8();
    let h = rekap::align::Homography::from_array(pt.homography).unwrap();
    let fields: Vec<(&rekap::template::Field, f64, f64)> = t
        .fields_on_page(pt.page)
        .filter(|f| f.kind.has_digit_boxes())
        .map(|f| (f, 0.0, 0.0))
        .collect();
    rekap::segment::cut_page(&gray, &h, &fields)
}

#[test]
fn screen_photos_are_tagged_and_descreened_paper_is_not() {
    let t = template();
    // The same submission with and without the screen: the screen has its own random stream,
    // so the handwriting and the paper photo's geometry are the same.
    let paper = screen_generator(SizeSpec::Fixed(1500, 2000), 0.0, 0.0, 0.0);
    let screen = screen_generator(SizeSpec::Fixed(1500, 2000), 0.0, 0.0, 1.0);
    // Index 0 of seed 62 draws a lattice the camera resolves (pitch ~1.8 px); a lattice much
    // finer than the camera's pixels blurs into plain paper and would not be descreened.
    let a = paper.submission(62, 0).unwrap();
    let b = screen.submission(62, 0).unwrap();
    assert_eq!(a.truth.fields, b.truth.fields);
    assert_eq!(a.truth.pages[0].homography, b.truth.pages[0].homography);
    for p in &b.truth.pages {
        assert!(
            p.conditions.hard.iter().any(|h| h == "screen"),
            "{:?}",
            p.conditions.hard
        );
        let s = p.conditions.screen.expect("screen recorded in the truth");
        assert!(s.pitch_px > 0.5 && s.pitch_px < 2.5, "{s:?}");
    }
    assert!(a.truth.pages.iter().all(|p| p.conditions.screen.is_none()));
    let (ca, cb) = (page1_crops(&a, &t), page1_crops(&b, &t));
    assert!(
        !ca.descreened && ca.texture < rekap::segment::SCREEN_TEXTURE,
        "{}",
        ca.texture
    );
    assert!(cb.descreened, "screen page texture {}", cb.texture);
    // The paper page's ink is exactly the plain cut.
    let fields: Vec<_> = t
        .fields_on_page(1)
        .filter(|f| f.kind.has_digit_boxes())
        .collect();
    let pt = &a.truth.pages[0];
    let gray = image::load_from_memory(&a.pages[0].1).unwrap().to_luma8();
    let h = rekap::align::Homography::from_array(pt.homography).unwrap();
    for (f, crops) in fields.iter().zip(&ca.fields) {
        let plain = rekap::segment::cut_boxes(&gray, &h, f, 0.0, 0.0);
        for (x, y) in plain.iter().zip(crops) {
            assert_eq!(x.ink, y.ink, "{}", f.id);
        }
    }
}
