//! Scale-out throughput: submissions per second drained from one PostgreSQL queue by 1, 2 and 4
//! `rekap worker` processes (`--jobs 1` each, one pipeline thread each: `RAYON_NUM_THREADS=1`),
//! printed with the ratio to 1 worker.
//!
//! `REKAP_TEST_PG_URL=postgres://user@host:port/db cargo bench --bench fleet` (or
//! `REKAP_BENCH_PG_URL`; the user may create databases). Env `REKAP_BENCH_FLEET_SUBS` (default
//! 24 submissions of three 12 MP pages: 4 distinct synthetic submissions, copied with a
//! different tag after the JPEG end so each copy is a distinct job). Needs the ONNX Runtime
//! library (scripts/fetch-onnxruntime.sh) and models/digits.json. Without a database URL it
//! prints how to run it and exits.
//!
//! Two rates are printed: "wall" counts from starting the workers to the last one exiting
//! (process start and model loading included); "steady" counts completions after the first one
//! over the time they took (the rate a long-running fleet sustains).

use rekap::store::{Migrate, Store};
use rekap::synth::idx::{DEFAULT_DIGITS_PATH, DigitBank};
use rekap::synth::{Generator, Options};
use rekap::template::{DEFAULT_TEMPLATE_PATH, Template};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Distinct synthetic submissions generated (copies of them make up the queue).
const DISTINCT: u64 = 4;
/// Worker counts measured.
const FLEETS: [usize; 3] = [1, 2, 4];

/// CPU seconds (user + system) of this process's waited-for children, from /proc (100 ticks
/// per second): the workers' own CPU time, whatever else shares the machine.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command name: state is index 0, cutime 13, cstime 14.
    (ticks(13) + ticks(14)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root)?;
    let Some(admin) = ["REKAP_BENCH_PG_URL", "REKAP_TEST_PG_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    else {
        eprintln!(
            "fleet bench skipped: set REKAP_BENCH_PG_URL (or REKAP_TEST_PG_URL) to a PostgreSQL URL \
             whose user may create databases, e.g. scripts/pg-test-cluster.sh start /tmp/pg 5433"
        );
        return Ok(());
    };
    let subs: usize = std::env::var("REKAP_BENCH_FLEET_SUBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let work = tempfile::tempdir()?;
    let photos = work.path().join("photos");
    let template = Template::load(Path::new(DEFAULT_TEMPLATE_PATH))?;
    let bank = DigitBank::load(Path::new(DEFAULT_DIGITS_PATH))?;
    let options = Options {
        size: "12mp".parse()?,
        hard_cases: 0.0,
        officer_errors: 0.0,
        screen: 0.0,
    };
    let generator = Generator::new(template, bank, HashMap::new(), options)?;
    eprintln!("generating {DISTINCT} submissions of 12 MP pages...");
    let mut distinct: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..DISTINCT {
        let s = generator.submission(4242, i)?;
        rekap::synth::write_submission(work.path(), &s)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(work.path().join(&s.name))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        distinct.push(
            files
                .iter()
                .map(std::fs::read)
                .collect::<std::io::Result<_>>()?,
        );
    }
    let pages: usize = (0..subs).map(|i| distinct[i % distinct.len()].len()).sum();
    let mut admin_client = postgres::Client::connect(&admin, postgres::NoTls)?;
    let mut results: Vec<(usize, f64, f64, f64)> = Vec::new();
    let mut sample_report = None;
    for workers in FLEETS {
        let name = format!("rekap_bench_fleet_{}_{workers}", std::process::id());
        admin_client.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = rekap::store::postgres_url_with_db(&admin, &name);
        let run = (|| -> anyhow::Result<(f64, f64, f64)> {
            let mut store = Store::open_postgres(&url, Some(&photos), Migrate::Apply)?;
            for i in 0..subs {
                let mut refs = Vec::new();
                for (k, bytes) in distinct[i % distinct.len()].iter().enumerate() {
                    let mut b = bytes.clone();
                    b.extend_from_slice(format!("rekap-bench-{i}").as_bytes());
                    refs.push((
                        store.put_blob(&b, "image/jpeg")?,
                        format!("page{}.jpg", k + 1),
                    ));
                }
                store.create_submission(&format!("bench-{i:04}"), &refs, None, None)?;
            }
            let t0 = Instant::now();
            let c0 = children_cpu_seconds();
            let mut children = Vec::new();
            for _ in 0..workers {
                children.push(
                    Command::new(env!("CARGO_BIN_EXE_rekap"))
                        .env("RAYON_NUM_THREADS", "1")
                        .args(["worker", "--jobs", "1", "--exit-when-drained", "--db", &url])
                        .arg("--photos")
                        .arg(&photos)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()?,
                );
            }
            for mut c in children {
                anyhow::ensure!(c.wait()?.success(), "a worker failed");
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = children_cpu_seconds() - c0;
            let jobs = store.jobs()?;
            anyhow::ensure!(
                jobs.iter().all(|j| j.state == "done"),
                "not every job is done: {:?}",
                jobs.iter()
                    .filter(|j| j.state != "done")
                    .collect::<Vec<_>>()
            );
            if sample_report.is_none() {
                sample_report = store.report(jobs[0].submission_id)?;
            }
            let mut done: Vec<i64> = jobs.iter().filter_map(|j| j.done_ms).collect();
            done.sort();
            let span_s = (done[done.len() - 1] - done[0]) as f64 / 1000.0;
            let steady = if span_s > 0.0 {
                (done.len() - 1) as f64 / span_s
            } else {
                f64::NAN
            };
            Ok((subs as f64 / wall, steady, cpu))
        })();
        admin_client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        let (wall_rate, steady, cpu) = run?;
        results.push((workers, wall_rate, steady, cpu));
    }
    // The ceiling the database puts on a fleet: ingests (report, ~100 field rows, the audit
    // entry) are serialised by the audit chain's lock, so their rate on one connection bounds
    // the whole fleet's.
    let ingest_rate = match &sample_report {
        Some(report) => {
            const INGESTS: usize = 200;
            let name = format!("rekap_bench_ingest_{}", std::process::id());
            admin_client.batch_execute(&format!("CREATE DATABASE {name}"))?;
            let url = rekap::store::postgres_url_with_db(&admin, &name);
            let r = (|| -> anyhow::Result<f64> {
                let mut store = Store::open_postgres(&url, Some(&photos), Migrate::Apply)?;
                let mut ids = Vec::new();
                for i in 0..INGESTS {
                    let sha = store.put_blob(format!("ingest-{i}").as_bytes(), "image/jpeg")?;
                    ids.push(
                        store
                            .create_submission(
                                &format!("i{i}"),
                                &[(sha, "p.jpg".into())],
                                None,
                                None,
                            )?
                            .0,
                    );
                }
                let t = Instant::now();
                for id in &ids {
                    anyhow::ensure!(store.ingest_report(*id, report)?, "ingest refused");
                }
                Ok(INGESTS as f64 / t.elapsed().as_secs_f64())
            })();
            admin_client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            Some((r?, report.fields.len()))
        }
        None => None,
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "fleet: {subs} submissions ({pages} pages of 12 MP), one PostgreSQL on this machine ({cores} cores), \
         workers with --jobs 1 and one pipeline thread each"
    );
    let (_, base_wall, base_steady, _) = results[0];
    for (w, wall, steady, cpu) in &results {
        println!(
            "  {w} worker(s): {wall:6.2} submissions/s wall ({:5.1} pages/s), {steady:6.2} steady; \
             ratio to 1 worker: {:.2} wall, {:.2} steady; workers' CPU {cpu:.1} s = {:.2} submissions per CPU-second",
            wall * pages as f64 / subs as f64,
            wall / base_wall,
            steady / base_steady,
            subs as f64 / cpu
        );
    }
    if let Some((rate, fields)) = ingest_rate {
        println!(
            "  ingest ceiling (one connection, loopback, serialised by the audit chain's lock): \
             {rate:.0} submissions/s ({fields} fields each)"
        );
    }
    println!(
        "  load average while measuring (other work on this machine inflates wall times): {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if FLEETS.iter().any(|&w| w > cores) {
        println!(
            "  note: {cores} cores here, so fleets larger than {cores} share cores (expect no gain past {cores})"
        );
    }
    Ok(())
}
