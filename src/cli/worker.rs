//! `rekap worker --db postgres://... --photos DIR [--jobs N]`: reads queued submissions.
//!
//! Any number of workers on any number of machines share one database queue (see
//! `crate::store` queue docs): each claims a job under a lease, renews the lease while the
//! pipeline reads the photos, and stores the report and marks the job done in one transaction.
//! A failed attempt (the pipeline panicked, or no page could be read) is retried up to
//! `--max-attempts`, then parked `failed` with its reason; a worker that dies outright leaves
//! its lease to expire and the job is claimed again.
//!
//! SIGTERM or SIGINT: stop claiming, finish the job in hand, exit 0. An unreachable database or
//! one with the wrong schema is reported (host, port, database; never the password) and retried
//! with exponential backoff.

use super::process::{PipelineFiles, build_pipeline, project_file};
use crate::pipeline::{Pipeline, SubmissionStatus};
use crate::recognize::OrtModel;
use crate::store::{IngestOutcome, Job, JobFate, Migrate, Store, StoreError};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Default lease: far above the ~1 s a submission takes, so only a dead or hung worker loses
/// its job, and short enough that such a job is taken up again within a minute.
pub const DEFAULT_LEASE_SECS: u64 = 60;
/// Default attempts per job: one retry for a transient failure (a photo not yet visible on a
/// network share, a worker killed by a deploy) plus one more; a job failing three times is
/// broken input and is parked for a person to look at.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 3;
/// First wait after the database could not be used; doubles each failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between connection attempts (a restarting database is back within this).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Wait between claims while the queue is empty: new uploads start within this.
const IDLE_POLL: Duration = Duration::from_millis(300);
/// Granularity of interruptible sleeps (how fast SIGTERM ends a wait).
const SLEEP_STEP: Duration = Duration::from_millis(50);
/// How long the metrics endpoint waits for a slow client's request line.
const METRICS_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The lease is renewed this many times per lease period, so one late renewal does not lose it.
const RENEWALS_PER_LEASE: u32 = 3;

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The shared database: a PostgreSQL URL (`postgres://user@host/db`) or a SQLite data
    /// folder (one machine).
    #[arg(long, value_name = "URL|DIR")]
    pub db: PathBuf,
    /// The shared folder of content-addressed photos (PostgreSQL; the same as the server's).
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// Jobs processed at once by this process (one thread and one database connection each).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Seconds a claimed job stays reserved without a renewal.
    #[arg(long, default_value_t = DEFAULT_LEASE_SECS)]
    pub lease_secs: u64,
    /// Attempts per job before it is parked as failed.
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i64,
    /// Apply pending database migrations at start (otherwise a schema other than this
    /// program's is refused, and retried until someone migrates it).
    #[arg(long)]
    pub migrate: bool,
    /// Exit (status 0) once nothing is queued or being processed (batch runs, benchmarks).
    #[arg(long)]
    pub exit_when_drained: bool,
    /// Serve this process's counters (Prometheus text) at http://ADDR/metrics and its health at
    /// /healthz (e.g. 127.0.0.1:9464; port 0 picks one, printed on stderr). The queue as a whole
    /// is on the server's /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    pub files: PipelineFiles,
}

/// What every worker thread shares.
struct Ctx {
    db: PathBuf,
    photos: Option<PathBuf>,
    describe: String,
    migrate: bool,
    lease_ms: i64,
    max_attempts: i64,
    exit_when_drained: bool,
    stop: Arc<AtomicBool>,
    /// Set when the configuration cannot work (a malformed URL, an unusable photo folder):
    /// retrying would not help, so every thread stops and the process exits non-zero.
    fatal: AtomicBool,
    field_order: Vec<String>,
    counters: Counters,
}

/// This process's counters (the `--metrics-addr` endpoint).
#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed_attempts: AtomicU64,
    parked: AtomicU64,
    in_progress: AtomicU64,
    /// Worker threads holding a working database connection.
    connected: AtomicU64,
}

impl Counters {
    fn prometheus(&self, threads: usize) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let lines: [(&str, &str, &str, u64); 6] = [
            (
                "rekap_worker_jobs_done_total",
                "counter",
                "Jobs this worker process completed.",
                get(&self.done),
            ),
            (
                "rekap_worker_failed_attempts_total",
                "counter",
                "Attempts of this process that failed (retried or parked).",
                get(&self.failed_attempts),
            ),
            (
                "rekap_worker_jobs_parked_total",
                "counter",
                "Jobs this process parked as failed after their last attempt.",
                get(&self.parked),
            ),
            (
                "rekap_worker_jobs_in_progress",
                "gauge",
                "Jobs being read now.",
                get(&self.in_progress),
            ),
            (
                "rekap_worker_threads",
                "gauge",
                "Worker threads (--jobs).",
                threads as u64,
            ),
            (
                "rekap_worker_connected_threads",
                "gauge",
                "Threads with a working database connection.",
                get(&self.connected),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in lines {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out
    }
}

/// Answer `/metrics` and `/healthz` (healthy while every thread has a database connection) on
/// `listener`, one request per connection, until the process ends.
fn serve_metrics(listener: std::net::TcpListener, ctx: Arc<Ctx>, threads: usize) {
    use std::io::{BufRead, Write};
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(METRICS_IO_TIMEOUT));
        let mut line = String::new();
        if std::io::BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let connected = ctx.counters.connected.load(Ordering::Relaxed) as usize;
        let (status, body) = match path {
            "/metrics" => ("200 OK", ctx.counters.prometheus(threads)),
            "/healthz" if connected == threads => ("200 OK", "ok\n".to_string()),
            "/healthz" => (
                "503 Service Unavailable",
                format!(
                    "{connected} of {threads} threads connected to {}\n",
                    ctx.describe
                ),
            ),
            _ => ("404 Not Found", "not found\n".to_string()),
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// Sleep `d`, waking early when asked to stop; false when stopping.
fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) -> bool {
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let step = left.min(SLEEP_STEP);
        std::thread::sleep(step);
        left -= step;
    }
    !stop.load(Ordering::Relaxed)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// Text of a panic payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Returns the process exit code.
pub fn run(args: WorkerArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    anyhow::ensure!(args.max_attempts >= 1, "--max-attempts must be at least 1");
    anyhow::ensure!(args.lease_secs >= 1, "--lease-secs must be at least 1");
    let db_text = args.db.to_string_lossy().into_owned();
    let is_pg = crate::store::is_postgres_url(&db_text);
    anyhow::ensure!(
        !is_pg || args.photos.is_some(),
        "a PostgreSQL --db needs --photos DIR: the photo folder shared with the server"
    );
    if !is_pg && args.photos.is_some() {
        eprintln!("warning: --photos is ignored: a SQLite data folder keeps its photos inside it");
    }
    let describe = if is_pg {
        crate::store::describe_postgres_url(&db_text)
    } else {
        format!("SQLite data folder {}", args.db.display())
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let template = args.files.load_template()?;
    let card = project_file(&args.files.model);
    let base = format!("{}:{}", hostname(), std::process::id());
    let mut pipelines = Vec::new();
    for i in 0..args.jobs {
        let crops = std::env::temp_dir().join(format!("rekap-worker-{}-{i}", std::process::id()));
        pipelines.push((
            format!("{base}:{i}"),
            build_pipeline(&card, &args.files.config, &template, Some(crops.clone()))
                .map(|(p, _)| p)
                .context("loading the reading pipeline")?,
            crops,
        ));
    }
    let ctx = Arc::new(Ctx {
        db: args.db.clone(),
        photos: args.photos.clone(),
        describe,
        migrate: args.migrate,
        lease_ms: (args.lease_secs * 1000) as i64,
        max_attempts: args.max_attempts,
        exit_when_drained: args.exit_when_drained,
        stop: Arc::clone(&stop),
        fatal: AtomicBool::new(false),
        counters: Counters::default(),
        field_order: template.numeric_fields().map(|f| f.id.clone()).collect(),
    });
    eprintln!(
        "rekap worker {base}: {} job(s) at once on {}",
        args.jobs, ctx.describe
    );
    if let Some(addr) = &args.metrics_addr {
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("--metrics-addr {addr}"))?;
        // Tests and scripts read this line to find the port.
        eprintln!(
            "rekap worker {base}: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let (ctx, threads) = (Arc::clone(&ctx), args.jobs);
        std::thread::spawn(move || serve_metrics(listener, ctx, threads));
    }
    let handles: Vec<_> = pipelines
        .into_iter()
        .map(|(id, pipeline, crops)| {
            let ctx = Arc::clone(&ctx);
            std::thread::spawn(move || {
                let n = work(&ctx, &id, &pipeline, &crops);
                let _ = std::fs::remove_dir_all(&crops);
                n
            })
        })
        .collect();
    let mut done = 0;
    for h in handles {
        done += h.join().unwrap_or(0);
    }
    if ctx.fatal.load(Ordering::Relaxed) {
        eprintln!("rekap worker {base}: stopped: the configuration cannot work (see above)");
        return Ok(1);
    }
    eprintln!(
        "rekap worker {base}: {} after {done} job(s)",
        if stop.load(Ordering::Relaxed) {
            "stopped on request"
        } else {
            "queue drained"
        }
    );
    Ok(0)
}

/// Open the store, reporting what went wrong in terms an operator can act on.
fn connect(ctx: &Ctx) -> Result<Store, StoreError> {
    let migrate = if ctx.migrate {
        Migrate::Apply
    } else {
        Migrate::Check
    };
    Ok(Store::open_target(&ctx.db, ctx.photos.as_deref(), migrate)?
        .with_field_order(ctx.field_order.clone()))
}

/// One worker thread's loop; returns the number of jobs it completed.
fn work(ctx: &Ctx, id: &str, pipeline: &Pipeline<OrtModel>, crops: &Path) -> usize {
    let mut store: Option<Arc<Mutex<Store>>> = None;
    let mut backoff = BACKOFF_START;
    let mut completed = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        let st = match &store {
            Some(s) => Arc::clone(s),
            None => match connect(ctx) {
                Ok(s) => {
                    tracing::info!("worker {id}: connected to {}", ctx.describe);
                    ctx.counters.connected.fetch_add(1, Ordering::Relaxed);
                    backoff = BACKOFF_START;
                    let s = Arc::new(Mutex::new(s));
                    store = Some(Arc::clone(&s));
                    s
                }
                Err(e @ (StoreError::Invalid(_) | StoreError::Io { .. })) => {
                    tracing::error!("worker {id}: cannot use {}: {e}", ctx.describe);
                    ctx.fatal.store(true, Ordering::Relaxed);
                    ctx.stop.store(true, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        "worker {id}: cannot use {}: {e}; retrying in {:.1} s",
                        ctx.describe,
                        backoff.as_secs_f64()
                    );
                    sleep_unless_stopped(&ctx.stop, backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let claimed = lock(&st).claim_job(id, ctx.lease_ms, ctx.max_attempts);
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => {
                if ctx.exit_when_drained {
                    match lock(&st).queue_busy() {
                        Ok(false) => break,
                        Ok(true) => {}
                        Err(e) => {
                            tracing::warn!("worker {id}: {e}; reconnecting");
                            disconnect(ctx, &mut store);
                        }
                    }
                }
                sleep_unless_stopped(&ctx.stop, IDLE_POLL);
                continue;
            }
            Err(e) => {
                tracing::warn!(
                    "worker {id}: claiming a job from {} failed: {e}; reconnecting in {:.1} s",
                    ctx.describe,
                    backoff.as_secs_f64()
                );
                disconnect(ctx, &mut store);
                sleep_unless_stopped(&ctx.stop, backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if ctx.stop.load(Ordering::Relaxed) {
            // Stopping between claim and work: give the job back untouched.
            if let Err(e) = lock(&st).release_job(job.submission_id, id) {
                tracing::warn!(
                    "worker {id}: releasing job {}: {e} (its lease will expire)",
                    job.submission_id
                );
            }
            break;
        }
        ctx.counters.in_progress.fetch_add(1, Ordering::Relaxed);
        let r = process(ctx, id, pipeline, &st, &job);
        ctx.counters.in_progress.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(true) => {
                completed += 1;
                ctx.counters.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(
                    "worker {id}: job {} ({}): database: {e}; the job returns to the queue when its lease expires",
                    job.submission_id,
                    job.name
                );
                disconnect(ctx, &mut store);
            }
        }
        let _ = std::fs::remove_dir_all(crops);
    }
    disconnect(ctx, &mut store);
    completed
}

/// Drop a thread's connection (it reconnects on its next turn).
fn disconnect(ctx: &Ctx, store: &mut Option<Arc<Mutex<Store>>>) {
    if store.take().is_some() {
        ctx.counters.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock(s: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the lock leaves no half-written state (transactions roll back).
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read one claimed job and record the outcome; Ok(true) when this worker ingested it.
fn process(
    ctx: &Ctx,
    id: &str,
    pipeline: &Pipeline<OrtModel>,
    st: &Arc<Mutex<Store>>,
    job: &Job,
) -> Result<bool, StoreError> {
    tracing::info!(
        "worker {id}: job {} ({}), attempt {}",
        job.submission_id,
        job.name,
        job.attempt
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let result = std::thread::scope(|s| {
        // Heartbeat: renew the lease while the pipeline runs.
        s.spawn(move || {
            let every = Duration::from_millis((ctx.lease_ms as u64) / RENEWALS_PER_LEASE as u64);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(every)
            {
                match lock(st).renew_job(job.submission_id, id, ctx.lease_ms) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("worker {id}: lost the lease on job {}", job.submission_id);
                        break;
                    }
                    Err(e) => tracing::warn!("worker {id}: renewing the lease: {e}"),
                }
            }
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline.process_submission(&job.name, &job.files)
        }));
        drop(done_tx);
        r
    });
    let failure = match result {
        Err(p) => Some(format!("the pipeline panicked: {}", panic_text(p.as_ref()))),
        Ok(report) if report.status == SubmissionStatus::Failed => {
            let why: Vec<String> = report
                .pages
                .iter()
                .filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.file)))
                .collect();
            Some(format!("no page could be read ({})", why.join("; ")))
        }
        Ok(report) => {
            let outcome = lock(st).complete_job(job.submission_id, id, &report)?;
            match outcome {
                IngestOutcome::Ingested => {
                    tracing::info!("worker {id}: job {} done", job.submission_id);
                    return Ok(true);
                }
                IngestOutcome::AlreadyDone => tracing::warn!(
                    "worker {id}: job {} had been done already; nothing changed",
                    job.submission_id
                ),
                IngestOutcome::LeaseLost => tracing::warn!(
                    "worker {id}: job {} was taken over after this worker's lease expired; result discarded",
                    job.submission_id
                ),
            }
            None
        }
    };
    if let Some(reason) = failure {
        ctx.counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
        let fate = lock(st).fail_job(job.submission_id, id, &reason, ctx.max_attempts)?;
        if fate == JobFate::Parked {
            ctx.counters.parked.fetch_add(1, Ordering::Relaxed);
        }
        match fate {
            JobFate::Retry => tracing::warn!(
                "worker {id}: job {} ({}) attempt {} failed, will retry: {reason}",
                job.submission_id,
                job.name,
                job.attempt
            ),
            JobFate::Parked => tracing::error!(
                "worker {id}: job {} ({}) parked as failed after {} attempts: {reason}",
                job.submission_id,
                job.name,
                job.attempt
            ),
            JobFate::NotHeld => tracing::warn!(
                "worker {id}: job {} failed but was no longer held by this worker",
                job.submission_id
            ),
        }
    }
    Ok(false)
}
