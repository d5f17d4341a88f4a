//! The self-contained HTML report: inline CSS, inline SVG plots (hand-written: a handful of
//! lines and bars, no fonts or network needed), tables, and the gallery of worst cases with
//! their crops embedded as data URIs.

use super::Problem;
use super::crops::{CaseKind, GalleryCase};
use super::metrics::{CalibrationBin, Evaluation, Metrics, RiskCoveragePoint, headline};
use super::tune::TuneResult;
use std::fmt::Write;

/// One run (results file) in the report.
pub struct Run<'a> {
    pub name: String,
    pub eval: &'a Evaluation,
    pub problems: &'a [Problem],
}

pub struct ReportInput<'a> {
    pub truth_dir: String,
    /// One run, or two compared side by side (the second against the first).
    pub runs: Vec<Run<'a>>,
    /// Worst cases of the first run.
    pub gallery: &'a [GalleryCase],
    pub tune: Option<&'a TuneResult>,
}

/// Series colours (first run, second run).
const COLOURS: [&str; 2] = ["#1f5fbf", "#d2691e"];
/// Plot size in CSS pixels, and its inner margin for axes and labels.
const PLOT_W: f64 = 420.0;
const PLOT_H: f64 = 320.0;
const PLOT_MARGIN: f64 = 46.0;

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;\
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}.bad{background:#fdd}\
.good{background:#dfd}.cm td{min-width:2.4em}.cm td.diag{background:#e4efe4}\
.cm td.off{background:#fbe3e3}.gallery{display:flex;flex-wrap:wrap;gap:12px}\
.case{border:1px solid #ccc;padding:6px;width:300px;font-size:.85em}\
.case.silent{border:2px solid #c00}.case img{max-width:288px;image-rendering:pixelated;\
display:block;margin-bottom:4px;background:#eee}.note{color:#666;font-size:.85em}\
.plots{display:flex;flex-wrap:wrap;gap:24px}code{background:#f5f5f5;padding:0 .2em}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(x: f64) -> String {
    format!("{:.3}%", 100.0 * x)
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.6}")
    }
}

fn opt_value(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "(blank)".into())
}

/// Axes, ticks and labels of a [0,1] x [0,ymax] plot; returns the SVG opening and a mapper.
fn axes(title: &str, xlabel: &str, ylabel: &str, ymax: f64) -> String {
    let (x0, y0, x1, y1) = (PLOT_MARGIN, PLOT_H - PLOT_MARGIN, PLOT_W - 10.0, 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{PLOT_W}\" height=\"{PLOT_H}\" \
         viewBox=\"0 0 {PLOT_W} {PLOT_H}\" font-size=\"11\" font-family=\"sans-serif\">\
         <text x=\"{}\" y=\"13\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#000\"/>\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#000\"/>",
        PLOT_W / 2.0,
        esc(title)
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let x = x0 + f * (x1 - x0);
        let y = y0 - f * (y0 - y1);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.1}</text>\
             <line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            y0 + 4.0,
            y0 + 16.0,
            f,
            x0 - 4.0,
            y + 4.0,
            if ymax >= 0.1 {
                format!("{:.2}", f * ymax)
            } else {
                format!("{:.4}", f * ymax)
            }
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"12\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">{}</text>",
        (x0 + x1) / 2.0,
        PLOT_H - 6.0,
        esc(xlabel),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(ylabel)
    );
    s
}

fn map(x: f64, y: f64, ymax: f64) -> (f64, f64) {
    let (x0, y0, x1, y1) = (PLOT_MARGIN, PLOT_H - PLOT_MARGIN, PLOT_W - 10.0, 20.0);
    (
        x0 + x.clamp(0.0, 1.0) * (x1 - x0),
        y0 - (y / ymax).clamp(0.0, 1.0) * (y0 - y1),
    )
}

/// Reliability diagram: accuracy per confidence bin against the diagonal.
pub fn reliability_svg(runs: &[(&str, &[CalibrationBin])]) -> String {
    let mut s = axes(
        "Reliability (field confidence)",
        "confidence",
        "accuracy",
        1.0,
    );
    let (a, b) = (map(0.0, 0.0, 1.0), map(1.0, 1.0, 1.0));
    let _ = write!(
        s,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
        a.0, a.1, b.0, b.1
    );
    let nruns = runs.len().max(1) as f64;
    for (r, (name, bins)) in runs.iter().enumerate() {
        let colour = COLOURS[r % COLOURS.len()];
        for bin in bins.iter().filter(|b| b.count > 0) {
            let width = (bin.upper - bin.lower) / nruns;
            let left = bin.lower + r as f64 * width;
            let (xl, yt) = map(left, bin.accuracy, 1.0);
            let (xr, yb) = map(left + width, 0.0, 1.0);
            let _ = write!(
                s,
                "<rect x=\"{xl:.1}\" y=\"{yt:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" \
                 fill-opacity=\"0.45\" stroke=\"{colour}\"><title>{} {:.1}-{:.1}: {} fields, \
                 accuracy {:.4}, mean confidence {:.4}</title></rect>",
                (xr - xl - 1.0).max(0.5),
                (yb - yt).max(0.0),
                esc(name),
                bin.lower,
                bin.upper,
                bin.count,
                bin.accuracy,
                bin.mean_confidence
            );
            let (cx, cy) = map(bin.mean_confidence, bin.accuracy, 1.0);
            let _ = write!(
                s,
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Risk-coverage curves with each run's operating point.
pub fn risk_coverage_svg(
    runs: &[(&str, &[RiskCoveragePoint], Option<RiskCoveragePoint>)],
) -> String {
    let top = runs
        .iter()
        .flat_map(|(_, c, op)| c.iter().map(|p| p.risk).chain(op.map(|o| o.risk)))
        .fold(0.0_f64, f64::max);
    // At least 1 % full scale so a curve of tiny risks is still readable.
    let ymax = (top * 1.1).max(0.01);
    let mut s = axes(
        "Risk-coverage (threshold-decided fields)",
        "coverage (share accepted)",
        "risk (wrong among accepted)",
        ymax,
    );
    for (r, (name, curve, op)) in runs.iter().enumerate() {
        let colour = COLOURS[r % COLOURS.len()];
        let pts: Vec<String> = curve
            .iter()
            .map(|p| {
                let (x, y) = map(p.coverage, p.risk, ymax);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
            pts.join(" ")
        );
        if let Some(op) = op {
            let (x, y) = map(op.coverage, op.risk, ymax);
            let _ = write!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"none\" stroke=\"{colour}\" \
                 stroke-width=\"2\"><title>{} operating point: coverage {:.4}, risk {:.5}</title>\
                 </circle><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>",
                esc(name),
                op.coverage,
                op.risk,
                x + 7.0,
                y - 7.0,
                if runs.len() > 1 {
                    ["first now", "second now"][r % 2]
                } else {
                    "now"
                }
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn table_rows(rows: &[Vec<String>], header: &[&str]) -> String {
    let mut s = String::from("<table><tr>");
    for (i, h) in header.iter().enumerate() {
        let _ = write!(
            s,
            "<th{}>{}</th>",
            if i == 0 { " class=\"l\"" } else { "" },
            esc(h)
        );
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let _ = write!(
                s,
                "<td{}>{}</td>",
                if i == 0 { " class=\"l\"" } else { "" },
                esc(c)
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn confusion_table(m: &Metrics) -> String {
    let mut s = String::from("<table class=\"cm\"><tr><th class=\"l\">truth \\ read</th>");
    for l in &m.boxes.labels {
        let _ = write!(s, "<th>{}</th>", esc(l));
    }
    s.push_str("<th>total</th></tr>");
    for (i, row) in m.boxes.confusion.iter().enumerate() {
        let _ = write!(s, "<tr><th class=\"l\">{}</th>", esc(&m.boxes.labels[i]));
        for (j, &c) in row.iter().enumerate() {
            let class = match (i == j, c) {
                (true, _) => " class=\"diag\"",
                (false, 0) => "",
                (false, _) => " class=\"off\"",
            };
            let _ = write!(
                s,
                "<td{class}>{}</td>",
                if c == 0 { String::new() } else { c.to_string() }
            );
        }
        let _ = write!(s, "<td>{}</td></tr>", row.iter().sum::<u64>());
    }
    s.push_str("</table>");
    s
}

fn run_sections(index: usize, run: &Run, out: &mut String) {
    let m = &run.eval.metrics;
    let name = esc(&run.name);
    // Section anchors by run number (names are paths and may repeat).
    let id = index + 1;
    let f = &m.fields;
    let _ = write!(
        out,
        "<h2 id=\"boxes-{id}\">Box level — {name}</h2>\
         <p>Box accuracy <b>{}</b> ({} of {} boxes of fields whose page was found).</p>\
         <h3>Confusion matrix (rows: truth, columns: read)</h3>{}\
         <h3>Accuracy by condition</h3>{}",
        pct(m.boxes.accuracy.rate),
        m.boxes.accuracy.count,
        m.boxes.accuracy.total,
        confusion_table(m),
        table_rows(
            &m.boxes
                .by_condition
                .iter()
                .map(|c| vec![
                    c.condition.clone(),
                    c.bucket.clone(),
                    c.accuracy.total.to_string(),
                    c.accuracy.count.to_string(),
                    pct(c.accuracy.rate)
                ])
                .collect::<Vec<_>>(),
            &["condition", "bucket", "boxes", "correct", "accuracy"]
        )
    );
    let _ = write!(
        out,
        "<h2 id=\"fields-{id}\">Field level — {name}</h2>{}",
        table_rows(
            &[
                vec!["fields scored".into(), f.scored.to_string(), String::new()],
                vec!["accepted".into(), f.accepted.to_string(), String::new()],
                vec!["flagged".into(), f.flagged.to_string(), String::new()],
                vec!["missing".into(), f.missing.to_string(), String::new()],
                vec![
                    "accuracy of accepted fields".into(),
                    format!(
                        "{} / {}",
                        f.accepted_accuracy.count, f.accepted_accuracy.total
                    ),
                    pct(f.accepted_accuracy.rate)
                ],
                vec![
                    "SILENT ERRORS (accepted and wrong) / fields scored".into(),
                    format!("{} / {}", f.silent_errors.count, f.silent_errors.total),
                    format!(
                        "{} (95% upper bound {})",
                        pct(f.silent_errors.rate),
                        pct(f.silent_errors.upper95)
                    )
                ],
                vec![
                    "silent errors / accepted fields".into(),
                    format!(
                        "{} / {}",
                        f.silent_errors_among_accepted.count, f.silent_errors_among_accepted.total
                    ),
                    format!(
                        "{} (95% upper bound {})",
                        pct(f.silent_errors_among_accepted.rate),
                        pct(f.silent_errors_among_accepted.upper95)
                    )
                ],
                vec![
                    "review rate (flagged or missing)".into(),
                    format!("{} / {}", f.review.count, f.review.total),
                    pct(f.review.rate)
                ],
                vec![
                    "flag precision (flagged fields misread or concerned by an officer error)"
                        .into(),
                    format!("{} / {}", f.flag_precision.count, f.flag_precision.total),
                    pct(f.flag_precision.rate)
                ],
            ],
            &["measure", "count", "rate"]
        )
    );
    let _ = write!(
        out,
        "<h3>Flag precision by flag code</h3>{}",
        table_rows(
            &f.flag_precision_by_code
                .iter()
                .map(|r| vec![
                    r.code.clone(),
                    r.precision.total.to_string(),
                    r.precision.count.to_string(),
                    pct(r.precision.rate)
                ])
                .collect::<Vec<_>>(),
            &["flag code", "flagged fields", "real problem", "precision"]
        )
    );
    let _ = write!(
        out,
        "<h3>Per field</h3>{}",
        table_rows(
            &f.per_field
                .iter()
                .map(|p| vec![
                    p.field.clone(),
                    p.scored.to_string(),
                    p.accepted.to_string(),
                    p.silent_errors.count.to_string(),
                    pct(p.silent_errors.rate),
                    pct(p.silent_errors.upper95),
                    pct(p.review.rate)
                ])
                .collect::<Vec<_>>(),
            &[
                "field",
                "scored",
                "accepted",
                "silent errors",
                "silent rate",
                "95% upper",
                "review rate"
            ]
        )
    );
    let s = &m.submissions;
    let _ = write!(
        out,
        "<h2 id=\"submissions-{id}\">Submissions — {name}</h2>{}",
        table_rows(
            &[
                vec!["scored".into(), s.scored.to_string(), String::new()],
                vec!["accepted".into(), s.accepted.to_string(), String::new()],
                vec![
                    "needs_review".into(),
                    s.needs_review.to_string(),
                    String::new()
                ],
                vec!["failed".into(), s.failed.to_string(), String::new()],
                vec![
                    "SILENTLY WRONG submissions".into(),
                    format!("{} / {}", s.silently_wrong.count, s.silently_wrong.total),
                    format!(
                        "{} (95% upper bound {})",
                        pct(s.silently_wrong.rate),
                        pct(s.silently_wrong.upper95)
                    )
                ],
                vec![
                    "review rate (needs_review or failed)".into(),
                    format!("{} / {}", s.review.count, s.review.total),
                    pct(s.review.rate)
                ],
            ],
            &["measure", "count", "rate"]
        )
    );
    if !s.silently_wrong_names.is_empty() {
        let _ = write!(
            out,
            "<p>Silently wrong: {}</p>",
            esc(&s.silently_wrong_names.join(", "))
        );
    }
    let o = &m.officer_errors;
    let _ = write!(
        out,
        "<h2 id=\"officer-{id}\">Officer errors — {name}</h2><p>Recall <b>{}</b> ({} of {} \
         officer errors flagged; {} without a rule id or bubble mismatch not checkable).</p>{}",
        pct(o.recall.rate),
        o.recall.count,
        o.recall.total,
        o.not_checkable,
        table_rows(
            &o.by_kind
                .iter()
                .map(|(k, r)| vec![
                    k.clone(),
                    r.total.to_string(),
                    r.count.to_string(),
                    pct(r.rate)
                ])
                .collect::<Vec<_>>(),
            &["kind", "errors", "found", "recall"]
        )
    );
    let hn = &m.hints;
    let _ = write!(
        out,
        "<p>Rule hints (the likeliest misreading named beside a broken hard rule): {} of {} rules \
         broken by a misreading have one, {} of them right; {} of {} rules broken only by an \
         officer's arithmetic have one.</p>",
        hn.hinted, hn.broken_by_misreading, hn.right, hn.officer_only_hinted, hn.officer_only
    );
    let missed: Vec<Vec<String>> = o
        .errors
        .iter()
        .filter(|e| !e.found)
        .map(|e| {
            vec![
                e.submission.clone(),
                e.kind.clone(),
                e.rule.clone().unwrap_or_default(),
                e.fields.join(" "),
            ]
        })
        .collect();
    if !missed.is_empty() {
        let _ = write!(
            out,
            "<h3>Missed officer errors</h3>{}",
            table_rows(&missed, &["submission", "kind", "rule", "fields"])
        );
    }
    let p = &m.pages;
    let mut rows = vec![
        vec![
            "identified (right page number)".into(),
            format!("{} / {}", p.identification.count, p.identification.total),
            pct(p.identification.rate),
        ],
        vec![
            "identified as a wrong page".into(),
            p.misidentified.to_string(),
            String::new(),
        ],
        vec![
            "alignment good".into(),
            format!("{} / {}", p.alignment_good.count, p.alignment_good.total),
            pct(p.alignment_good.rate),
        ],
    ];
    match &p.alignment_error {
        Some(a) => rows.push(vec![
            "alignment error at box corners (mean / max)".into(),
            format!("{} pages, {} corners", a.pages, a.corners),
            format!("{:.3} mm / {:.3} mm", a.mean_mm, a.max_mm),
        ]),
        None => rows.push(vec![
            "alignment error".into(),
            "not measured".into(),
            String::new(),
        ]),
    }
    let _ = write!(
        out,
        "<h2 id=\"pages-{id}\">Pages — {name}</h2>{}",
        table_rows(&rows, &["measure", "count", "value"])
    );
    let c = &m.confidence;
    let _ = write!(
        out,
        "<h2 id=\"confidence-{id}\">Confidence — {name}</h2><p>Expected calibration error \
         (10 bins, {} fields read): <b>{:.4}</b>. Threshold-decided fields: {}.</p>{}",
        c.fields,
        c.ece,
        c.threshold_decided,
        table_rows(
            &c.bins
                .iter()
                .map(|b| vec![
                    format!("{:.1}-{:.1}", b.lower, b.upper),
                    b.count.to_string(),
                    format!("{:.4}", b.mean_confidence),
                    format!("{:.4}", b.accuracy)
                ])
                .collect::<Vec<_>>(),
            &["confidence bin", "fields", "mean confidence", "accuracy"]
        )
    );
    if let Some(op) = &c.operating_point {
        let _ = write!(
            out,
            "<p>Operating point of this run: {} of {} threshold-decided fields accepted \
             (coverage {}), {} wrong (risk {}), lowest accepted confidence {:.6}.</p>",
            op.accepted,
            c.threshold_decided,
            pct(op.coverage),
            op.errors,
            pct(op.risk),
            op.threshold
        );
    }
    let sp = &m.speed;
    let mut rows = vec![
        vec!["submissions".into(), sp.submissions.to_string()],
        vec!["pages (photos)".into(), sp.pages.to_string()],
        vec![
            "pages per second (one worker)".into(),
            format!("{:.3}", sp.pages_per_second),
        ],
    ];
    for (k, v) in &sp.ms_per_page {
        rows.push(vec![format!("{k} ms per page"), format!("{v:.1}")]);
    }
    let _ = write!(
        out,
        "<h2 id=\"speed-{id}\">Speed — {name}</h2>{}",
        table_rows(&rows, &["measure", "value"])
    );
    if !run.problems.is_empty() {
        let _ = write!(out, "<h2 id=\"problems-{id}\">Not scored — {name}</h2><ul>");
        for p in run.problems {
            let _ = write!(out, "<li>{}</li>", esc(&p.to_string()));
        }
        out.push_str("</ul>");
    }
}

fn gallery(cases: &[GalleryCase], out: &mut String) {
    let silent = cases
        .iter()
        .filter(|c| c.kind == CaseKind::SilentError)
        .count();
    let _ = write!(
        out,
        "<h2 id=\"gallery\">Worst cases</h2><p>{silent} silent errors (red frame) and {} flagged \
         fields (a sample).</p><div class=\"gallery\">",
        cases.len() - silent
    );
    for c in cases {
        let o = &c.outcome;
        let class = if c.kind == CaseKind::SilentError {
            "case silent"
        } else {
            "case"
        };
        let _ = write!(out, "<div class=\"{class}\">");
        match &c.image {
            Some(uri) => {
                let _ = write!(
                    out,
                    "<img src=\"{uri}\" alt=\"{} {}\">",
                    esc(&o.submission),
                    esc(&o.field)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<div class=\"note\">no image: {}</div>",
                    esc(&c.image_note)
                );
            }
        }
        let boxes = |b: &[crate::recognize::Label]| {
            b.iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            out,
            "<b>{}</b> {} (page {})<br>truth <b>{}</b> [{}]<br>read <b>{}</b> [{}]<br>{} \
             confidence {:.6}{}<br><span class=\"note\">{}</span></div>",
            esc(&o.field),
            esc(&o.submission),
            o.page.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            opt_value(o.truth),
            boxes(&o.truth_boxes),
            opt_value(o.read),
            boxes(&o.read_boxes),
            match o.status {
                crate::decide::FieldStatus::Accepted => "ACCEPTED",
                crate::decide::FieldStatus::Flagged => "flagged",
                crate::decide::FieldStatus::Missing => "missing",
            },
            o.confidence,
            if o.flags.is_empty() {
                String::new()
            } else {
                format!("<br>flags: {}", esc(&o.flags.join(", ")))
            },
            esc(&c.image_note)
        );
    }
    out.push_str("</div>");
}

/// Render the whole report.
pub fn render(input: &ReportInput) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>rekap eval</title>\
         <style>{CSS}</style></head><body><h1>rekap eval</h1><p>Truth: <code>{}</code>. Runs: {}.\
         Definitions of every measure: README.md, \"Measuring accuracy (rekap eval)\". Bounds are \
         one-sided exact (Clopper-Pearson) 95% upper bounds.</p>",
        esc(&input.truth_dir),
        input
            .runs
            .iter()
            .map(|r| format!("<code>{}</code>", esc(&r.name)))
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    // Summary (with deltas when two runs are compared).
    let heads: Vec<Vec<(&str, f64)>> = input
        .runs
        .iter()
        .map(|r| headline(&r.eval.metrics))
        .collect();
    let mut header: Vec<String> = vec!["measure".into()];
    header.extend(input.runs.iter().map(|r| r.name.clone()));
    if heads.len() == 2 {
        header.push("delta (second - first)".into());
    }
    let mut rows = Vec::new();
    if let Some(first) = heads.first() {
        for (k, v) in first {
            let mut row = vec![k.to_string(), num(*v)];
            if let Some(second) = heads.get(1) {
                match second.iter().find(|(k2, _)| k2 == k) {
                    Some((_, v2)) => {
                        row.push(num(*v2));
                        row.push(format!("{:+.6}", v2 - v));
                    }
                    None => {
                        row.push("-".into());
                        row.push("-".into());
                    }
                }
            }
            rows.push(row);
        }
    }
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let _ = write!(
        out,
        "<h2 id=\"summary\">Summary</h2>{}",
        table_rows(&rows, &hdr)
    );
    if let Some(t) = input.tune {
        let _ = write!(
            out,
            "<h2 id=\"tuning\">Tuning</h2><p>Target: 95% upper bound on the field silent error \
             rate at most {}, and as many errors predicted by the confidences. Chosen \
             acceptance threshold <b>{:.6}</b>: {} of {} fields accepted, {} reviews, {} silent \
             errors, bound {}, predicted {:.1}. Measure it on another set.</p>",
            t.target,
            t.threshold,
            t.accepted,
            t.fields,
            t.reviews,
            t.silent_errors,
            pct(t.upper95),
            t.expected_errors
        );
    }
    let rel: Vec<(&str, &[CalibrationBin])> = input
        .runs
        .iter()
        .map(|r| (r.name.as_str(), r.eval.metrics.confidence.bins.as_slice()))
        .collect();
    let rc: Vec<(&str, &[RiskCoveragePoint], Option<RiskCoveragePoint>)> = input
        .runs
        .iter()
        .map(|r| {
            let c = &r.eval.metrics.confidence;
            (
                r.name.as_str(),
                c.risk_coverage.as_slice(),
                c.operating_point,
            )
        })
        .collect();
    let _ = write!(
        out,
        "<h2 id=\"plots\">Confidence plots</h2><div class=\"plots\">{}{}</div>",
        reliability_svg(&rel),
        risk_coverage_svg(&rc)
    );
    for (i, run) in input.runs.iter().enumerate() {
        run_sections(i, run, &mut out);
    }
    gallery(input.gallery, &mut out);
    out.push_str("</body></html>\n");
    out
}
