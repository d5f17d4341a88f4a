//! End-to-end speed of `rekap process` on 12 MP JPEG pages, printed as ratios measured in one
//! run: pages per second with 1 and 2 threads, total time over JPEG-decode-only time for the
//! same files, and peak memory: of this process, and of `rekap process` run with 1 and 2
//! workers on the same photos (the second worker's cost is the difference).
//!
//! `cargo bench --bench pipeline` (env `REKAP_BENCH_PAGES`, default 24 pages = 8 submissions).
//! Every timed pass runs [`REPEATS`] times and the fastest counts.
//! Needs the ONNX Runtime library (scripts/fetch-onnxruntime.sh) and models/digits.json.
//! CPU time is printed beside wall time because a shared machine inflates the latter.

use rekap::decide::DecideConfig;
use rekap::pipeline::{Pipeline, Timings};
use rekap::recognize::{DEFAULT_MODEL_CARD, ModelCard, ModelPool};
use rekap::synth::idx::{DEFAULT_DIGITS_PATH, DigitBank};
use rekap::synth::{Generator, Options};
use rekap::template::{DEFAULT_TEMPLATE_PATH, Template};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// CPU seconds of this process so far, all threads (CLOCK_PROCESS_CPUTIME_ID: nanosecond
/// resolution, where /proc's tick counts step by 10 ms, 2 % of a 12-page run).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer to a local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Each timed pass runs this many times, interleaved with the others; the fastest counts
/// (other load on the machine only ever slows a pass down).
const REPEATS: usize = 3;

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux >= 4.0); harmless where unsupported.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root)?;
    let pages: usize = std::env::var("REKAP_BENCH_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let subs = pages.div_ceil(3);
    let dir = tempfile::tempdir()?;
    let template = Template::load(Path::new(DEFAULT_TEMPLATE_PATH))?;
    let bank = DigitBank::load(Path::new(DEFAULT_DIGITS_PATH))?;
    let options = Options {
        size: "12mp".parse()?,
        hard_cases: 0.0,
        officer_errors: 0.0,
        screen: 0.0,
    };
    let generator = Generator::new(template.clone(), bank, HashMap::new(), options)?;
    eprintln!("generating {subs} submissions of 12 MP pages...");
    let mut submissions: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for i in 0..subs as u64 {
        let s = generator.submission(777, i)?;
        rekap::synth::write_submission(dir.path(), &s)?;
        let out = dir.path().join(&s.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        submissions.push((s.name.clone(), files));
    }
    let all: Vec<PathBuf> = submissions.iter().flat_map(|s| s.1.clone()).collect();
    let n = all.len() as f64;
    let bytes: u64 = all
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();

    // Decode only, one thread, warm file cache.
    for p in &all {
        let _ = std::fs::read(p)?;
    }
    let decode_pass = || -> anyhow::Result<(f64, f64)> {
        let (w0, c0) = (Instant::now(), cpu_seconds());
        for p in &all {
            let photo = rekap::load::load_photo(p)?;
            std::hint::black_box(photo.gray.as_raw().len());
            // As the pipeline does: the next photo decodes into this one's buffer.
            rekap::load::recycle(photo);
        }
        Ok((w0.elapsed().as_secs_f64(), cpu_seconds() - c0))
    };

    let card_path = PathBuf::from(DEFAULT_MODEL_CARD);
    let card = ModelCard::read(&card_path)?;
    let mut setups = Vec::new();
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let pipeline = Pipeline {
            template: template.clone(),
            config: DecideConfig::default(),
            pool: ModelPool::ort(card_path.clone(), rekap::recognize::DEFAULT_BATCH_SIZE)?,
            model_name: card.name.clone(),
            crops_dir: None,
        };
        // Warm-up: one submission (model sessions, page cache).
        pool.install(|| pipeline.process_submission("warm", &submissions[0].1));
        setups.push((threads, pool, pipeline));
    }
    let (mut decode_wall, mut decode_cpu) = (f64::INFINITY, f64::INFINITY);
    // Per thread count: best wall, best cpu, resident before and peak of the first pass.
    let mut results = vec![(0usize, f64::INFINITY, f64::INFINITY, 0.0, 0.0); setups.len()];
    // Summed stage times (ms) of the fastest 1-thread pass, from the reports.
    let mut stages = [0.0f64; 5];
    for round in 0..REPEATS {
        let (w, c) = decode_pass()?;
        decode_wall = decode_wall.min(w);
        decode_cpu = decode_cpu.min(c);
        for (k, (threads, pool, pipeline)) in setups.iter().enumerate() {
            let rss_before = status_kb("VmRSS:");
            reset_peak_rss();
            let (w, c) = (Instant::now(), cpu_seconds());
            let timings: Vec<Timings> = pool.install(|| {
                use rayon::prelude::*;
                submissions
                    .par_iter()
                    .map(|(name, files)| pipeline.process_submission(name, files).timings)
                    .collect()
            });
            let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
            if *threads == 1 && cpu < results[k].2 {
                stages = timings.iter().fold([0.0; 5], |a, t| {
                    [
                        a[0] + t.decode_ms,
                        a[1] + t.align_ms,
                        a[2] + t.segment_ms,
                        a[3] + t.recognize_ms,
                        a[4] + t.decide_ms,
                    ]
                });
            }
            let r = &mut results[k];
            r.0 = *threads;
            r.1 = r.1.min(wall);
            r.2 = r.2.min(cpu);
            if round == 0 {
                r.3 = rss_before;
                r.4 = status_kb("VmHWM:");
            }
        }
    }
    // Peak memory of real worker processes: `rekap process -j N` on the same photos, its
    // VmHWM (peak resident set of the process since exec) polled from /proc while it runs
    // (monotonic, so the last reading is the peak up to a few ms before exit, when it frees).
    let child_peak_mb = |jobs: usize| -> anyhow::Result<f64> {
        let out = dir.path().join(format!("results-j{jobs}.jsonl"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rekap"))
            .arg("process")
            .arg(dir.path())
            .args(["--jobs", &jobs.to_string(), "--quiet", "--out"])
            .arg(&out)
            .spawn()?;
        let status_path = format!("/proc/{}/status", child.id());
        let mut peak_kb = 0.0f64;
        loop {
            let hwm = std::fs::read_to_string(&status_path)
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
                .unwrap_or(0.0);
            peak_kb = peak_kb.max(hwm);
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(peak_kb / 1024.0)
    };
    let proc1 = child_peak_mb(1)?;
    let proc2 = child_peak_mb(2)?;
    let (_, wall1, cpu1, rss1, peak1) = results[0];
    let (_, wall2, cpu2, _, _) = results[1];
    println!(
        "pipeline benchmark: {} pages of 12 MP JPEG ({:.1} MB), model {}; fastest of {REPEATS} passes",
        n,
        bytes as f64 / 1e6,
        card.name
    );
    println!(
        "  decode only, 1 thread : {:7.1} ms/page wall {:7.1} ms/page cpu",
        1e3 * decode_wall / n,
        1e3 * decode_cpu / n
    );
    println!(
        "  pipeline, 1 thread    : {:7.2} pages/s wall {:7.2} pages/s per cpu-second",
        n / wall1,
        n / cpu1
    );
    println!(
        "  pipeline, 2 threads   : {:7.2} pages/s wall {:7.2} pages/s per cpu-second",
        n / wall2,
        n / cpu2
    );
    println!(
        "    its stages (ms/page): decode {:.1}, align {:.1}, segment {:.1}, recognize {:.1}, \
         decide {:.1}",
        stages[0] / n,
        stages[1] / n,
        stages[2] / n,
        stages[3] / n,
        stages[4] / n
    );
    println!(
        "  ratio 2 threads / 1 thread (wall)       : {:.2}",
        wall1 / wall2
    );
    println!(
        "  ratio total / decode-only (1 thread, cpu): {:.2}",
        cpu1 / decode_cpu.max(1e-9)
    );
    println!(
        "  ratio total / decode-only (1 thread, wall): {:.2}",
        wall1 / decode_wall.max(1e-9)
    );
    println!(
        "  peak memory, 1 worker : {:.0} MB resident at peak ({:.0} MB before the run)",
        peak1 / 1024.0,
        rss1 / 1024.0
    );
    println!(
        "    (the bench process itself: its synthetic generator and the heap kept from generating"
    );
    println!("     the photos count too; the worker processes below show what a worker needs)");
    println!(
        "  peak memory, rekap process -j 1: {proc1:.0} MB whole process; -j 2: {proc2:.0} MB \
         ({:.0} MB more for the second worker)",
        proc2 - proc1
    );
    Ok(())
}
