//! `rekap template check`: validate a template, summarise it, and optionally draw its overlay on
//! an upright full-page image and measure how well the digit boxes fit the printed lines.

use crate::template::fit::{self, EDGE_NAMES, FitReport, TOLERANCE_MM};
use crate::template::overlay::draw_overlay_scaled;
use crate::template::{DEFAULT_TEMPLATE_PATH, RuleKind, Template};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::PathBuf;

/// Number of worst-fitting boxes listed in the text report.
const WORST_SHOWN: usize = 8;

#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    #[command(subcommand)]
    pub command: TemplateCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TemplateCommand {
    /// Validate a template; with --image, draw its overlay and measure the box fit.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Template TOML file.
    #[arg(long, default_value = DEFAULT_TEMPLATE_PATH)]
    pub template: PathBuf,
    /// Upright, full-page image of one page (e.g. `pdftoppm -r 150 -png` of the blank form).
    #[arg(long, requires = "page")]
    pub image: Option<PathBuf>,
    /// Template page number shown in --image (1-based).
    #[arg(long, requires = "image")]
    pub page: Option<u32>,
    /// Where to write the overlay PNG (needs --image).
    #[arg(long, requires = "image")]
    pub out: Option<PathBuf>,
    /// Print the summary (and fit) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Summary {
    template: String,
    id: String,
    pages: usize,
    fields: usize,
    fields_by_kind: Vec<(String, usize)>,
    digit_boxes: usize,
    rule_specs: usize,
    rules_hard: usize,
    rules_soft: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    fit: Option<FitSummary>,
}

#[derive(Serialize)]
struct FitSummary {
    image: String,
    page: u32,
    px_per_mm: f64,
    tolerance_mm: f64,
    /// Largest absolute offset; `null` when some edge had no detectable line.
    max_offset_mm: Option<f64>,
    boxes_checked: usize,
    /// Mark squares and the tag.
    marks_checked: usize,
    /// Boxes, mark squares or tag off by more than the tolerance.
    over_tolerance: usize,
    report: FitReport,
}

pub fn run(args: TemplateArgs) -> Result<()> {
    match args.command {
        TemplateCommand::Check(a) => check(a),
    }
}

fn check(args: CheckArgs) -> Result<()> {
    let t = Template::load(&args.template)?;
    let rules = t.rules();
    let mut summary = Summary {
        template: args.template.display().to_string(),
        id: t.id.clone(),
        pages: t.pages.len(),
        fields: t.fields.len(),
        fields_by_kind: t
            .kind_counts()
            .into_iter()
            .map(|(k, n)| (k.as_str().to_string(), n))
            .collect(),
        digit_boxes: t.numeric_fields().map(|f| f.boxes.len()).sum(),
        rule_specs: t.rules.len(),
        rules_hard: rules.iter().filter(|r| r.kind == RuleKind::Hard).count(),
        rules_soft: rules.iter().filter(|r| r.kind == RuleKind::Soft).count(),
        fit: None,
    };
    if let (Some(image), Some(page)) = (&args.image, args.page) {
        let img =
            image::open(image).with_context(|| format!("cannot read image {}", image.display()))?;
        let report = fit::measure_fit(&img.to_luma8(), &t, page)?;
        if let Some(out) = &args.out {
            let mut rgb = img.to_rgb8();
            draw_overlay_scaled(&mut rgb, &t, page, report.px_per_mm);
            rgb.save(out)
                .with_context(|| format!("cannot write overlay {}", out.display()))?;
            tracing::info!("overlay written to {}", out.display());
        }
        let max = report.max_abs_mm();
        summary.fit = Some(FitSummary {
            image: image.display().to_string(),
            page,
            px_per_mm: report.px_per_mm,
            tolerance_mm: TOLERANCE_MM,
            max_offset_mm: max.is_finite().then_some(max),
            boxes_checked: report.boxes.len(),
            marks_checked: report.marks.len(),
            over_tolerance: report.misfits(TOLERANCE_MM).len(),
            report,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary, args.out.as_ref());
    }
    if let Some(f) = &summary.fit
        && f.over_tolerance > 0
    {
        bail!(
            "{} of {} boxes/marks on page {} are off by more than {} mm (max {})",
            f.over_tolerance,
            f.boxes_checked + f.marks_checked,
            f.page,
            TOLERANCE_MM,
            f.max_offset_mm
                .map_or("no line found".to_string(), |m| format!("{m:.2} mm"))
        );
    }
    Ok(())
}

fn print_text(s: &Summary, out: Option<&PathBuf>) {
    println!("template {} ({}): valid", s.template, s.id);
    println!("  pages: {}", s.pages);
    let kinds: Vec<String> = s
        .fields_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("  fields: {} ({})", s.fields, kinds.join(", "));
    println!("  digit boxes: {}", s.digit_boxes);
    println!(
        "  rules: {} specs -> {} hard + {} soft instances",
        s.rule_specs, s.rules_hard, s.rules_soft
    );
    let Some(f) = &s.fit else { return };
    println!(
        "fit on {} (page {}, {:.3} px/mm): {} boxes + {} mark squares/tag, max offset {}, {} over {} mm",
        f.image,
        f.page,
        f.px_per_mm,
        f.boxes_checked,
        f.marks_checked,
        f.max_offset_mm
            .map_or("n/a (a line was not found)".to_string(), |m| format!(
                "{m:.3} mm"
            )),
        f.over_tolerance,
        f.tolerance_mm
    );
    println!(
        "  worst (offset per edge, mm; + = printed edge lies outwards of a box, inwards of a mark):"
    );
    for b in f.report.worst(WORST_SHOWN) {
        let edges: Vec<String> = EDGE_NAMES
            .iter()
            .zip(b.offsets_mm)
            .map(|(n, o)| match o {
                Some(v) => format!("{n} {v:+.3}"),
                None => format!("{n} none"),
            })
            .collect();
        println!("    {}[{}]: {}", b.field, b.index, edges.join(", "));
    }
    if let Some(o) = out {
        println!("overlay written to {}", o.display());
    }
}
