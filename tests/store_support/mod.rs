//! Store tests run against both backends: SQLite in a temporary folder, and PostgreSQL in a
//! fresh database per test when `REKAP_TEST_PG_URL` names a server (`postgres://user@host:port/db`;
//! the user may create databases). Without it the PostgreSQL half of each test is skipped with a
//! notice, unless `REKAP_REQUIRE_PG=1` (CI), which turns a missing or unreachable server into a
//! failure.
#![allow(dead_code)]

use rekap::store::{Migrate, Store};
use std::ffi::OsString;
use std::path::PathBuf;

pub const PG_URL_ENV: &str = "REKAP_TEST_PG_URL";
pub const REQUIRE_PG_ENV: &str = "REKAP_REQUIRE_PG";

/// One test's database: a SQLite data folder or a PostgreSQL database created for the test
/// (photos in a temporary folder); the PostgreSQL database is dropped afterwards.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    /// `Some((url of the test database, admin url, database name))` for PostgreSQL.
    pub pg: Option<(String, String, String)>,
}

fn require_pg() -> bool {
    std::env::var(REQUIRE_PG_ENV).is_ok_and(|v| v == "1")
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a notice) when no server is configured.
    pub fn postgres(test: &str) -> Option<TestDb> {
        let admin = match std::env::var(PG_URL_ENV) {
            Ok(u) if !u.is_empty() => u,
            _ => {
                assert!(
                    !require_pg(),
                    "{REQUIRE_PG_ENV}=1 but {PG_URL_ENV} is not set: the PostgreSQL half of the store tests cannot run"
                );
                eprintln!(
                    "skipping the PostgreSQL half of {test}: set {PG_URL_ENV}=postgres://user@host:port/db to run it"
                );
                return None;
            }
        };
        let mut client = match postgres::Client::connect(&admin, postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    !require_pg(),
                    "{REQUIRE_PG_ENV}=1 but PostgreSQL at {PG_URL_ENV}={admin} is unreachable: {e}"
                );
                eprintln!("skipping the PostgreSQL half of {test}: {admin} unreachable: {e}");
                return None;
            }
        };
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).unwrap();
        let name = format!("rekap_t_{}", hex::encode(rnd));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Some(TestDb {
            dir: tempfile::tempdir().unwrap(),
            pg: Some((
                rekap::store::postgres_url_with_db(&admin, &name),
                admin,
                name,
            )),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    pub fn photos(&self) -> PathBuf {
        self.dir.path().join("photos")
    }

    /// Open the store (migrating it), as the server does.
    pub fn open(&self) -> Store {
        match &self.pg {
            None => Store::open(self.dir.path()).unwrap(),
            Some((url, _, _)) => {
                Store::open_postgres(url, Some(&self.photos()), Migrate::Apply).unwrap()
            }
        }
    }

    /// The `--db` argument naming this database.
    pub fn db_arg(&self) -> OsString {
        match &self.pg {
            None => self.dir.path().as_os_str().to_owned(),
            Some((url, _, _)) => url.into(),
        }
    }

    /// Extra arguments a command needs besides `--db` (the photo folder for PostgreSQL).
    pub fn photo_args(&self) -> Vec<OsString> {
        match &self.pg {
            None => Vec::new(),
            Some(_) => vec!["--photos".into(), self.photos().into_os_string()],
        }
    }

    /// Run SQL as an attacker with database access would: drop the append-only triggers, then
    /// run `sql` (written in the common subset of both dialects).
    pub fn tamper(&self, sql: &str) {
        let store = self.open();
        let drop = if self.is_postgres() {
            "DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_delete ON audit;"
        } else {
            "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
        };
        store.execute_for_tests(drop).unwrap();
        store.execute_for_tests(sql).unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((_, admin, name)) = &self.pg
            && let Ok(mut c) = postgres::Client::connect(admin, postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// `both!(name, |db: TestDb| { ... })`: the test `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn sqlite() {
                let f: fn(store_support::TestDb) = $body;
                f(store_support::TestDb::sqlite());
            }
            #[test]
            fn postgres() {
                let f: fn(store_support::TestDb) = $body;
                if let Some(db) =
                    store_support::TestDb::postgres(concat!(stringify!($name), "::postgres"))
                {
                    f(db);
                }
            }
        }
    };
}

#[test]
fn url_db_is_replaced() {
    assert_eq!(
        rekap::store::postgres_url_with_db("postgres://u@127.0.0.1:5433/rekap_test", "x"),
        "postgres://u@127.0.0.1:5433/x"
    );
    assert_eq!(
        rekap::store::postgres_url_with_db("postgresql://u:p@h/db?sslmode=disable", "y"),
        "postgresql://u:p@h/y?sslmode=disable"
    );
    assert_eq!(
        rekap::store::postgres_url_with_db("postgres://h", "z"),
        "postgres://h/z"
    );
}
