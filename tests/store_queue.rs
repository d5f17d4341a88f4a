//! The work queue on both backends: claims under leases, retries, parking, idempotent
//! completion, concurrent claimers and writers (see `tests/store_support`).

mod serve_support;
mod store_support;

use rekap::store::{IngestOutcome, JobFate, Store};
use serve_support::*;
use std::collections::HashSet;
use std::time::Duration;

/// A lease that is over by the time the test looks again.
const SHORT_LEASE_MS: i64 = 50;
/// Wait that outlasts [`SHORT_LEASE_MS`] with margin for a slow machine.
const PAST_SHORT_LEASE: Duration = Duration::from_millis(200);
/// A lease the test never sees expire.
const LONG_LEASE_MS: i64 = 600_000;

/// Queue `n` submissions (one unique photo each); returns their ids and photo sha256s.
fn enqueue(store: &mut Store, n: usize, prefix: &str) -> Vec<(i64, String)> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}-{i:03}");
            let sha = store
                .put_blob(&fixture_photo_for(&name), "image/jpeg")
                .unwrap();
            let (id, created) = store
                .create_submission(&name, &[(sha.clone(), "page1.jpg".into())], None, None)
                .unwrap();
            assert!(created);
            (id, sha)
        })
        .collect()
}

both!(claims_are_exclusive_and_completion_is_idempotent, |db| {
    let mut store = db.open();
    let subs = enqueue(&mut store, 2, "tps");
    let a = store.claim_job("a", LONG_LEASE_MS, 3).unwrap().unwrap();
    let b = store.claim_job("b", LONG_LEASE_MS, 3).unwrap().unwrap();
    assert_eq!((a.submission_id, a.attempt), (subs[0].0, 1));
    assert_eq!(b.submission_id, subs[1].0);
    assert_eq!(a.files.len(), 1);
    assert!(a.files[0].exists());
    assert!(store.claim_job("c", LONG_LEASE_MS, 3).unwrap().is_none());
    assert!(
        store
            .renew_job(a.submission_id, "a", LONG_LEASE_MS)
            .unwrap()
    );
    assert!(
        !store
            .renew_job(a.submission_id, "b", LONG_LEASE_MS)
            .unwrap()
    );
    let report = fixture_report(&subs[0].1, "tps-000");
    assert_eq!(
        store.complete_job(a.submission_id, "a", &report).unwrap(),
        IngestOutcome::Ingested
    );
    assert_eq!(
        store.complete_job(a.submission_id, "a", &report).unwrap(),
        IngestOutcome::AlreadyDone
    );
    assert!(!store.ingest_report(a.submission_id, &report).unwrap());
    let stats = store.queue_stats().unwrap();
    assert_eq!(stats.by_state["done"], 1);
    assert_eq!(stats.by_state["processing"], 1);
    assert_eq!(stats.by_state["queued"], 0);
    assert_eq!(stats.done_last_minute, 1);
    assert_eq!(stats.review_backlog, 3, "dpt.p, dpt.lp, b1.l are flagged");
    assert_eq!(store.audit_entries(None).unwrap().len(), 1);
    assert_eq!(store.verify_audit().unwrap(), Ok(1));
});

both!(
    an_expired_lease_passes_the_job_on_and_the_late_result_is_dropped,
    |db| {
        let mut store = db.open();
        let subs = enqueue(&mut store, 1, "tps");
        let first = store.claim_job("a", SHORT_LEASE_MS, 3).unwrap().unwrap();
        assert!(store.claim_job("b", LONG_LEASE_MS, 3).unwrap().is_none());
        std::thread::sleep(PAST_SHORT_LEASE);
        assert_eq!(store.queue_stats().unwrap().expired_leases, 1);
        let second = store.claim_job("b", LONG_LEASE_MS, 3).unwrap().unwrap();
        assert_eq!(
            (second.submission_id, second.attempt),
            (first.submission_id, 2)
        );
        let report = fixture_report(&subs[0].1, "tps-000");
        assert_eq!(
            store
                .complete_job(first.submission_id, "a", &report)
                .unwrap(),
            IngestOutcome::LeaseLost
        );
        assert!(
            !store
                .renew_job(first.submission_id, "a", LONG_LEASE_MS)
                .unwrap()
        );
        assert_eq!(
            store
                .complete_job(second.submission_id, "b", &report)
                .unwrap(),
            IngestOutcome::Ingested
        );
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs[0].state, "done");
        assert_eq!(jobs[0].attempts, 2);
        assert_eq!(jobs[0].worker.as_deref(), Some("b"));
        assert_eq!(store.audit_entries(None).unwrap().len(), 1);
    }
);

both!(
    failed_attempts_are_retried_then_parked_without_blocking_the_queue,
    |db| {
        let mut store = db.open();
        let subs = enqueue(&mut store, 2, "tps");
        let j = store.claim_job("a", LONG_LEASE_MS, 2).unwrap().unwrap();
        assert_eq!(j.submission_id, subs[0].0);
        assert_eq!(
            store
                .fail_job(j.submission_id, "a", "decoder crashed", 2)
                .unwrap(),
            JobFate::Retry
        );
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs[0].state, "queued");
        assert_eq!(jobs[0].error.as_deref(), Some("attempt 1: decoder crashed"));
        let j = store.claim_job("b", LONG_LEASE_MS, 2).unwrap().unwrap();
        assert_eq!((j.submission_id, j.attempt), (subs[0].0, 2));
        assert_eq!(
            store.fail_job(j.submission_id, "a", "not mine", 2).unwrap(),
            JobFate::NotHeld
        );
        assert_eq!(
            store
                .fail_job(j.submission_id, "b", "decoder crashed", 2)
                .unwrap(),
            JobFate::Parked
        );
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs[0].state, "failed");
        let err = jobs[0].error.clone().unwrap();
        assert!(
            err.contains("gave up after 2 attempts") && err.contains("decoder crashed"),
            "{err}"
        );
        // The parked job is never claimed again; the next one is.
        let next = store.claim_job("c", LONG_LEASE_MS, 2).unwrap().unwrap();
        assert_eq!(next.submission_id, subs[1].0);
        assert!(store.claim_job("c", LONG_LEASE_MS, 2).unwrap().is_none());
        let stats = store.queue_stats().unwrap();
        assert_eq!(stats.by_state["failed"], 1);
        assert_eq!(stats.attempts, 3);
        let sub = store.submission(subs[0].0).unwrap().unwrap();
        assert_eq!(sub.state, rekap::store::SubmissionState::Failed);
    }
);

both!(
    a_job_whose_worker_dies_on_its_last_attempt_is_parked,
    |db| {
        let mut store = db.open();
        enqueue(&mut store, 1, "tps");
        let j = store.claim_job("a", SHORT_LEASE_MS, 1).unwrap().unwrap();
        std::thread::sleep(PAST_SHORT_LEASE);
        assert!(store.claim_job("b", LONG_LEASE_MS, 1).unwrap().is_none());
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs[0].submission_id, j.submission_id);
        assert_eq!(jobs[0].state, "failed");
        let err = jobs[0].error.clone().unwrap();
        assert!(err.contains("lease of worker a expired"), "{err}");
        assert!(!store.queue_busy().unwrap());
    }
);

both!(
    a_released_job_is_queued_again_without_counting_the_attempt,
    |db| {
        let mut store = db.open();
        enqueue(&mut store, 1, "tps");
        let j = store.claim_job("a", LONG_LEASE_MS, 3).unwrap().unwrap();
        assert!(store.queue_busy().unwrap());
        assert!(store.release_job(j.submission_id, "a").unwrap());
        let again = store.claim_job("b", LONG_LEASE_MS, 3).unwrap().unwrap();
        assert_eq!((again.submission_id, again.attempt), (j.submission_id, 1));
    }
);

both!(
    concurrent_claimers_take_each_job_once_and_the_chain_stays_whole,
    |db| {
        const JOBS: usize = 24;
        const WORKERS: usize = 4;
        let subs = enqueue(&mut db.open(), JOBS, "tps");
        let shas: std::collections::HashMap<i64, String> = subs.into_iter().collect();
        let taken: Vec<Vec<i64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let db = &db;
                    let shas = &shas;
                    s.spawn(move || {
                        let mut store = db.open();
                        let name = format!("w{w}");
                        let mut mine = Vec::new();
                        while let Some(j) = store.claim_job(&name, LONG_LEASE_MS, 3).unwrap() {
                            let report = fixture_report(&shas[&j.submission_id], &j.name);
                            assert_eq!(
                                store.complete_job(j.submission_id, &name, &report).unwrap(),
                                IngestOutcome::Ingested
                            );
                            mine.push(j.submission_id);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<i64> = taken.concat();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), JOBS, "{taken:?}");
        assert_eq!(unique.len(), JOBS);
        let store = db.open();
        assert_eq!(store.verify_audit().unwrap(), Ok(JOBS));
        assert!(
            store
                .jobs()
                .unwrap()
                .iter()
                .all(|j| j.state == "done" && j.attempts == 1)
        );
    }
);
