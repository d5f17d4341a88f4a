//! The shipped template against the official blank form: every digit box, mark square and tag of
//! every page must fit the print of a `pdftoppm` render within 0.5 mm, and a template shifted by
//! 1 mm must fail (negative control). Skipped, with a message, when the PDF (`$REKAP_FORM_PDF` or
//! `../shared/forms/C.HASIL-PPWP.pdf`) or pdftoppm is not available.

use rekap::template::fit::{TOLERANCE_MM, measure_fit};
use rekap::template::{DEFAULT_TEMPLATE_PATH, Template};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Render resolution: low enough to be quick, high enough that 0.5 mm is ~3 px.
const DPI: u32 = 150;
/// Shift of the negative control, in mm (twice the tolerance).
const SHIFT_MM: f64 = 1.0;

/// The blank form: `$REKAP_FORM_PDF` if set, else the repository's shared copy.
fn pdf_path() -> PathBuf {
    std::env::var_os("REKAP_FORM_PDF").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/forms/C.HASIL-PPWP.pdf"),
        PathBuf::from,
    )
}

fn have_pdftoppm() -> bool {
    Command::new("pdftoppm")
        .arg("-v")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Render pages `first..=last` into `dir`; returns the PNG paths, or `None` (with a message)
/// when the inputs are missing.
fn render(dir: &Path, first: u32, last: u32) -> Option<Vec<PathBuf>> {
    let pdf = pdf_path();
    if !pdf.exists() {
        eprintln!("SKIPPED: {} not found", pdf.display());
        return None;
    }
    if !have_pdftoppm() {
        eprintln!("SKIPPED: pdftoppm (poppler-utils) not installed");
        return None;
    }
    let status = Command::new("pdftoppm")
        .args(["-r", &DPI.to_string(), "-png", "-f", &first.to_string()])
        .args(["-l", &last.to_string()])
        .arg(&pdf)
        .arg(dir.join("page"))
        .status()
        .expect("run pdftoppm");
    assert!(status.success(), "pdftoppm failed");
    let pages: Vec<PathBuf> = (first..=last)
        .map(|i| dir.join(format!("page-{i}.png")))
        .collect();
    for p in &pages {
        assert!(p.exists(), "missing render {}", p.display());
    }
    Some(pages)
}

fn template() -> Template {
    Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_TEMPLATE_PATH)).unwrap()
}

#[test]
fn every_box_fits_the_official_form_and_a_shift_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pages) = render(dir.path(), 1, 3) else {
        return;
    };
    let t = template();
    let shifted = t.shifted(SHIFT_MM, SHIFT_MM);
    for (i, path) in pages.iter().enumerate() {
        let page = i as u32 + 1;
        let img = image::open(path).unwrap().to_luma8();
        let rep = measure_fit(&img, &t, page).unwrap();
        let expected: usize = t.fields_on_page(page).map(|f| f.boxes.len()).sum();
        assert_eq!(rep.boxes.len(), expected);
        assert!(expected > 0);
        let worst = rep.worst(3);
        eprintln!(
            "page {page}: {} boxes, max offset {:.3} mm (worst {:?})",
            rep.boxes.len(),
            rep.max_abs_mm(),
            worst
                .iter()
                .map(|b| format!("{}[{}] {:.3}", b.field, b.index, b.max_abs_mm()))
                .collect::<Vec<_>>()
        );
        assert!(
            rep.max_abs_mm() <= TOLERANCE_MM,
            "page {page}: boxes off by more than {TOLERANCE_MM} mm: {:?}",
            rep.misfits(TOLERANCE_MM)
        );
        // negative control: every box of the shifted template is off by about SHIFT_MM
        let bad = measure_fit(&img, &shifted, page).unwrap();
        assert_eq!(rep.marks.len(), 9);
        assert_eq!(
            bad.misfits(TOLERANCE_MM).len(),
            bad.boxes.len() + bad.marks.len(),
            "page {page}: a {SHIFT_MM} mm shift must make every box misfit"
        );
        for b in bad.boxes.iter().chain(&bad.marks) {
            let m = b.max_abs_mm();
            assert!(
                m.is_infinite() || (m - SHIFT_MM).abs() < 0.3,
                "page {page}: {}[{}] shifted offset {m}",
                b.field,
                b.index
            );
        }
    }
}

#[test]
fn cli_check_exit_status_follows_the_fit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pages) = render(dir.path(), 3, 3) else {
        return;
    };
    let page3 = &pages[0];
    let bin = env!("CARGO_BIN_EXE_rekap");
    let tpl = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_TEMPLATE_PATH);
    let overlay = dir.path().join("overlay.png");
    let out = Command::new(bin)
        .args(["template", "check", "--page", "3", "--json", "--template"])
        .arg(&tpl)
        .arg("--image")
        .arg(page3)
        .arg("--out")
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pages"], 3);
    assert_eq!(v["fit"]["over_tolerance"], 0);
    assert_eq!(v["fit"]["marks_checked"], 9);
    assert!(v["fit"]["max_offset_mm"].as_f64().unwrap() <= TOLERANCE_MM);
    let ov = image::open(&overlay).unwrap();
    let src = image::open(page3).unwrap();
    assert_eq!((ov.width(), ov.height()), (src.width(), src.height()));
    assert_ne!(ov.to_rgb8().as_raw(), src.to_rgb8().as_raw());

    // the same image against a template shifted by 1 mm: non-zero exit naming the misfit
    let shifted = dir.path().join("shifted.toml");
    std::fs::write(
        &shifted,
        toml::to_string(&template().shifted(SHIFT_MM, 0.0)).unwrap(),
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["template", "check", "--page", "3", "--template"])
        .arg(&shifted)
        .arg("--image")
        .arg(page3)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("off by more than 0.5 mm"), "{err}");
}

#[test]
fn the_guide_dots_sit_on_the_printed_guide() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pages) = render(dir.path(), 2, 2) else {
        return;
    };
    let img = image::open(&pages[0]).unwrap().to_luma8();
    let px_per_mm = f64::from(DPI) / 25.4;
    let grey_at = |x_mm: f64, y_mm: f64| {
        let (x, y) = ((x_mm * px_per_mm) as u32, (y_mm * px_per_mm) as u32);
        img.get_pixel(x, y).0[0]
    };
    let t = template();
    let mut checked = 0;
    for f in t.fields_on_page(2).filter(|f| !f.guide_dots.is_empty()) {
        let grey = f.guide_grey.expect("a guide has its grey");
        for b in &f.boxes {
            for d in &f.guide_dots {
                let (cx, cy) = (b[0] + d[0] + d[2] / 2.0, b[1] + d[1] + d[3] / 2.0);
                // The dot's centre is printed in the template's grey; a millimetre to the
                // lower right, between the guide's rows and columns, is white paper.
                let on = grey_at(cx, cy);
                assert!(
                    on.abs_diff(grey) <= 25,
                    "{}: dot at {cx:.2},{cy:.2} mm reads {on}, template says {grey}",
                    f.id
                );
                let off = grey_at(cx + 1.0, cy + 0.83);
                assert!(off >= 245, "{}: beside a dot the render reads {off}", f.id);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 33);
}
