//! `rekap worker` fleets on PostgreSQL: three real worker processes drain 100 queued submissions
//! while one is killed with SIGKILL mid-batch; SIGTERM finishes the job in hand; a poisoned job
//! is parked after its retries; an unreachable or unmigrated database is reported and retried.
//! The PostgreSQL tests skip with a notice unless `REKAP_TEST_PG_URL` is set (see
//! `tests/store_support`).

mod serve_support;
mod store_support;

use rekap::store::{JobRow, Store};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store_support::TestDb;

/// Submissions in the fleet test.
const FLEET_JOBS: usize = 100;
/// Workers in the fleet test (one is killed).
const FLEET_WORKERS: usize = 3;
/// Lease of the fleet test's workers: short, so the killed worker's job comes back quickly.
const FLEET_LEASE_SECS: &str = "3";
/// Generous bound for a queue to drain on a slow, shared 2-core machine (a hang guard, not a
/// speed assertion).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(100);

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled synthetic submissions' page photos (6 submissions x 3 pages).
fn synth_sets() -> Vec<Vec<PathBuf>> {
    let root = manifest().join("testdata/synth");
    let mut sets: Vec<Vec<PathBuf>> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .map(|d| {
            let mut pages: Vec<PathBuf> = std::fs::read_dir(&d)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
                .collect();
            pages.sort();
            pages
        })
        .collect();
    sets.sort();
    assert!(!sets.is_empty());
    sets
}

/// Queue `n` distinct submissions: the synthetic photos with a per-submission tag after the
/// JPEG end marker (decoders ignore it; the sha256, hence the job identity, differs).
fn enqueue_synth(store: &mut Store, n: usize) -> Vec<i64> {
    let sets = synth_sets();
    let pages: Vec<Vec<Vec<u8>>> = sets
        .iter()
        .map(|s| s.iter().map(|p| std::fs::read(p).unwrap()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let mut refs = Vec::new();
            for (k, bytes) in pages[i % pages.len()].iter().enumerate() {
                let mut b = bytes.clone();
                b.extend_from_slice(format!("rekap-fleet-{i}").as_bytes());
                refs.push((
                    store.put_blob(&b, "image/jpeg").unwrap(),
                    format!("page{}.jpg", k + 1),
                ));
            }
            let (id, created) = store
                .create_submission(&format!("fleet-{i:03}"), &refs, None, None)
                .unwrap();
            assert!(created);
            id
        })
        .collect()
}

/// Start `rekap worker` on `db`, its stderr in `log`.
fn spawn_worker(db: &TestDb, log: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rekap"))
        .current_dir(manifest())
        .env("RUST_LOG", "rekap=info")
        .arg("worker")
        .arg("--db")
        .arg(db.db_arg())
        .args(db.photo_args())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, timeout: Duration, log: &Path) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            panic!(
                "worker did not exit within {timeout:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Send a signal (`-STOP`, `-CONT`) to a process with kill(1).
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

#[test]
fn a_fleet_with_a_killed_worker_processes_every_submission_exactly_once() {
    let Some(db) = TestDb::postgres("worker_fleet::fleet") else {
        return;
    };
    let mut store = db.open();
    let ids = enqueue_synth(&mut store, FLEET_JOBS);
    let logs = tempfile::tempdir().unwrap();
    let mut workers: Vec<(Child, PathBuf)> = (0..FLEET_WORKERS)
        .map(|i| {
            let log = logs.path().join(format!("worker{i}.log"));
            // The last worker runs two jobs at once (threads with a connection each).
            let jobs = if i == FLEET_WORKERS - 1 { "2" } else { "1" };
            let c = spawn_worker(
                &db,
                &log,
                &[
                    "--lease-secs",
                    FLEET_LEASE_SECS,
                    "--exit-when-drained",
                    "--jobs",
                    jobs,
                ],
            );
            (c, log)
        })
        .collect();
    // Mid-batch: once some jobs are done and the victim holds one, kill it outright.
    let victim_pid = workers[0].0.id();
    let victim_tag = format!(":{victim_pid}:");
    let held_by_victim = |jobs: &[JobRow]| {
        jobs.iter()
            .find(|j| {
                j.state == "processing"
                    && j.worker.as_deref().is_some_and(|w| w.contains(&victim_tag))
            })
            .map(|j| j.submission_id)
    };
    let victim_job = loop {
        wait_for("the victim to hold a job mid-batch", DRAIN_TIMEOUT, || {
            let jobs = store.jobs().unwrap();
            let done = jobs.iter().filter(|j| j.state == "done").count();
            done >= 5 && held_by_victim(&jobs).is_some()
        });
        // Freeze the victim, then read again: between the first read and the freeze it may
        // have finished that job (which then shows one attempt, not a takeover).
        signal(victim_pid, "-STOP");
        if let Some(job) = held_by_victim(&store.jobs().unwrap()) {
            break job;
        }
        signal(victim_pid, "-CONT");
    };
    workers[0].0.kill().unwrap(); // SIGKILL (also ends a stopped process)
    workers[0].0.wait().unwrap();
    for (c, log) in workers.iter_mut().skip(1) {
        let status = wait_exit(c, DRAIN_TIMEOUT, log);
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&*log).unwrap()
        );
    }
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs.len(), FLEET_JOBS);
    for j in &jobs {
        assert_eq!(j.state, "done", "{j:?}");
        assert!(j.has_report, "{j:?}");
    }
    // Exactly one ingest per submission in the audit log: none lost, none duplicated.
    let entries = store.audit_entries(None).unwrap();
    for id in &ids {
        let n = entries
            .iter()
            .filter(|e| e.action == "ingest" && e.submission_id == *id)
            .count();
        assert_eq!(n, 1, "submission {id} ingested {n} times");
    }
    assert_eq!(store.verify_audit().unwrap(), Ok(entries.len()));
    // The killed worker's job was taken over after its lease expired.
    let vj = jobs.iter().find(|j| j.submission_id == victim_job).unwrap();
    assert_eq!(vj.attempts, 2, "{vj:?}");
    assert!(
        !vj.worker.as_deref().unwrap().contains(&victim_tag),
        "{vj:?}"
    );
    let stats = store.queue_stats().unwrap();
    assert_eq!(stats.by_state["processing"], 0);
    assert_eq!(stats.by_state["failed"], 0);
    assert_eq!(stats.expired_leases, 0);
    // Both survivors did real work.
    let by: std::collections::HashMap<String, usize> =
        jobs.iter().fold(Default::default(), |mut m, j| {
            *m.entry(j.worker.clone().unwrap()).or_default() += 1;
            m
        });
    assert!(by.len() >= 2, "{by:?}");
}

#[test]
fn sigterm_finishes_the_job_in_hand_and_exits() {
    let Some(db) = TestDb::postgres("worker_fleet::sigterm") else {
        return;
    };
    let mut store = db.open();
    enqueue_synth(&mut store, 20);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    let mut w = spawn_worker(&db, &log, &["--metrics-addr", "127.0.0.1:0"]);
    let tag = format!(":{}:", w.id());
    wait_for("the worker to hold a job", DRAIN_TIMEOUT, || {
        store.jobs().unwrap().iter().any(|j| {
            j.state == "processing" && j.worker.as_deref().is_some_and(|x| x.contains(&tag))
        })
    });
    // Its own metrics and health endpoint.
    let addr: std::net::SocketAddr = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split_once("metrics on http://")
                .map(|(_, a)| a.trim_end_matches("/metrics").parse().unwrap())
        })
        .expect("the worker prints its metrics address");
    let m = serve_support::http(addr, "GET", "/metrics", None, None, None).unwrap();
    assert_eq!(m.status, 200);
    assert!(m.body.contains("rekap_worker_threads 1"), "{}", m.body);
    assert!(
        m.body.contains("rekap_worker_connected_threads 1"),
        "{}",
        m.body
    );
    let h = serve_support::http(addr, "GET", "/healthz", None, None, None).unwrap();
    assert_eq!(h.status, 200, "{}", h.body);
    let held: Vec<i64> = store
        .jobs()
        .unwrap()
        .iter()
        .filter(|j| j.state == "processing")
        .map(|j| j.submission_id)
        .collect();
    let kill = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut w, DRAIN_TIMEOUT, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("stopped on request"), "{text}");
    let jobs = store.jobs().unwrap();
    assert!(jobs.iter().all(|j| j.state != "processing"), "{jobs:?}");
    for id in held {
        let j = jobs.iter().find(|j| j.submission_id == id).unwrap();
        assert!(
            j.state == "done" || (j.state == "queued" && j.attempts == 0),
            "the job in hand was finished or released: {j:?}"
        );
    }
    assert!(
        jobs.iter().any(|j| j.state == "queued"),
        "it stopped claiming"
    );
}

#[test]
fn a_poisoned_job_is_parked_after_its_retries_and_the_rest_complete() {
    let Some(db) = TestDb::postgres("worker_fleet::poison") else {
        return;
    };
    let mut store = db.open();
    // A JPEG header followed by garbage: decoding it fails.
    let mut poison = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    poison.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let sha = store.put_blob(&poison, "image/jpeg").unwrap();
    let (bad, _) = store
        .create_submission("poison", &[(sha, "page1.jpg".into())], None, None)
        .unwrap();
    let good = enqueue_synth(&mut store, 3);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    let mut w = spawn_worker(&db, &log, &["--max-attempts", "2", "--exit-when-drained"]);
    let status = wait_exit(&mut w, DRAIN_TIMEOUT, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    let jobs = store.jobs().unwrap();
    let b = jobs.iter().find(|j| j.submission_id == bad).unwrap();
    assert_eq!(b.state, "failed", "{b:?}");
    assert_eq!(b.attempts, 2, "{b:?}");
    let err = b.error.clone().unwrap();
    assert!(
        err.contains("gave up after 2 attempts") && err.contains("no page could be read"),
        "{err}"
    );
    assert!(text.contains("parked as failed"), "{text}");
    for id in good {
        let j = jobs.iter().find(|j| j.submission_id == id).unwrap();
        assert_eq!(j.state, "done", "{j:?}");
    }
    let metrics = rekap::serve::prometheus_text(&store.queue_stats().unwrap());
    assert!(metrics.contains("rekap_jobs_failed_total 1"), "{metrics}");
    assert!(metrics.contains("rekap_jobs_done_total 3"), "{metrics}");
}

#[test]
fn a_worker_drains_a_sqlite_data_folder_too() {
    let db = TestDb::sqlite();
    let mut store = db.open();
    let ids = enqueue_synth(&mut store, 2);
    let log = db.dir.path().join("worker.log");
    let mut w = spawn_worker(&db, &log, &["--exit-when-drained"]);
    let status = wait_exit(&mut w, DRAIN_TIMEOUT, &log);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs.len(), ids.len());
    assert!(
        jobs.iter().all(|j| j.state == "done" && j.attempts == 1),
        "{jobs:?}"
    );
    assert_eq!(store.verify_audit().unwrap(), Ok(ids.len()));
}

#[test]
fn a_malformed_database_url_stops_the_worker_at_once() {
    let photos = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .current_dir(manifest())
        .args(["worker", "--db", "postgres://rekap@127.0.0.1:notaport/x"])
        .arg("--photos")
        .arg(photos.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("database URL"), "{text}");
    assert!(!text.contains("retrying"), "{text}");
}

#[test]
fn an_unreachable_database_is_named_and_retried_with_backoff() {
    let photos = tempfile::tempdir().unwrap();
    let log = photos.path().join("worker.log");
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let mut w = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .current_dir(manifest())
        .args([
            "worker",
            "--db",
            "postgres://rekap:secret-pw@127.0.0.1:1/rekap",
        ])
        .arg("--photos")
        .arg(photos.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Backoff 0.5 s, 1 s, 2 s...: three attempts within 2.5 s.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(w.try_wait().unwrap().is_none(), "the worker keeps retrying");
    w.kill().unwrap();
    w.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let retries: Vec<&str> = text.lines().filter(|l| l.contains("retrying in")).collect();
    assert!(retries.len() >= 2, "{text}");
    assert!(
        retries[0].contains("PostgreSQL at 127.0.0.1:1 database rekap"),
        "{text}"
    );
    assert!(retries[0].contains("retrying in 0.5 s"), "{text}");
    assert!(retries[1].contains("retrying in 1.0 s"), "{text}");
    assert!(
        !text.contains("secret-pw"),
        "the password never appears: {text}"
    );
}

#[test]
fn a_database_without_the_schema_is_reported_until_it_is_migrated() {
    let Some(db) = TestDb::postgres("worker_fleet::schema") else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    // The database exists but nobody migrated it.
    let mut w = spawn_worker(&db, &log, &[]);
    wait_for("the schema complaint", DRAIN_TIMEOUT, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("retrying in")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "database schema version 0, this rekap needs {}",
            rekap::store::SCHEMA_VERSION
        )),
        "{text}"
    );
    assert!(text.contains("rekap worker --migrate"), "{text}");
    // A server migrates it and queues work: the retrying worker picks it up.
    let mut store = db.open();
    enqueue_synth(&mut store, 1);
    wait_for("the job to be done", DRAIN_TIMEOUT, || {
        store.jobs().unwrap()[0].state == "done"
    });
    let kill = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut w, DRAIN_TIMEOUT, &log);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// POST a multipart upload of `files` over loopback; returns (status, body).
fn upload(
    addr: std::net::SocketAddr,
    cookie: &str,
    csrf: &str,
    files: &[PathBuf],
) -> (u16, String) {
    use std::io::{Read, Write};
    let boundary = "rekapFLEETboundary0123456789";
    let mut body = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&std::fs::read(f).unwrap());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /api/submissions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[test]
fn serve_on_postgres_takes_uploads_that_workers_read() {
    use serve_support::{PASSWORD, SUPERVISOR, http, http_login};
    use std::io::BufRead;
    let Some(db) = TestDb::postgres("worker_fleet::serve") else {
        return;
    };
    let store = db.open();
    store
        .add_user(SUPERVISOR, rekap::store::Role::Supervisor, PASSWORD)
        .unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_rekap"))
        .current_dir(manifest())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-cookie",
            "--db",
        ])
        .arg(db.db_arg())
        .args(db.photo_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(server.stdout.take().unwrap());
    let addr: std::net::SocketAddr = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("listening on http://")
                .map(|a| a.trim_end_matches('/').parse().unwrap())
        })
        .expect("the server prints its address");
    let health = http(addr, "GET", "/healthz", None, None, None).unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["database"], "ok");
    let (cookie, csrf) = http_login(addr, SUPERVISOR);
    let files = synth_sets()[0].clone();
    let (status, text) = upload(addr, &cookie, &csrf, &files);
    assert_eq!(status, 202, "{text}");
    // The server only queues it; a worker reads it.
    let jobs = store.jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, "queued");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("worker.log");
    let mut w = spawn_worker(&db, &log, &["--exit-when-drained"]);
    assert!(wait_exit(&mut w, DRAIN_TIMEOUT, &log).success());
    let metrics = http(addr, "GET", "/metrics", None, None, None).unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("rekap_jobs_done_total 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("rekap_queue_depth 0"),
        "{}",
        metrics.body
    );
    let backlog: f64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("rekap_review_backlog "))
        .unwrap()
        .parse()
        .unwrap();
    let queue = http(addr, "GET", "/api/queue", Some(&cookie), None, None).unwrap();
    assert_eq!(queue.status, 200, "{}", queue.body);
    let items = queue.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(backlog > 0.0, !items.is_empty(), "{}", queue.body);
    // SIGTERM: a graceful stop.
    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < DRAIN_TIMEOUT, "the server ignores SIGTERM");
        std::thread::sleep(POLL);
    };
    assert!(status.success(), "{status:?}");
}
