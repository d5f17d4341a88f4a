//! Command-line front ends, one module per `rekap` subcommand. `src/main.rs` only parses and
//! dispatches; each module owns its argument struct and its `run` function.

pub mod audit;
pub mod classify;
pub mod crops;
pub mod eval;
pub mod process;
pub mod serve;
pub mod synth;
pub mod template;
pub mod user;
pub mod worker;

/// Open an existing review database to read from it (`rekap eval --db`, `rekap crops --db`):
/// a folder without a database is refused (nothing is created there), and a PostgreSQL
/// database of another schema version is refused rather than migrated by a measurement (a
/// SQLite folder opens as the server opens it).
pub fn open_review_db(
    db: &std::path::Path,
    photos: Option<&std::path::Path>,
) -> anyhow::Result<crate::store::Store> {
    use crate::store::{DB_FILE, Migrate, Store, is_postgres_url};
    use anyhow::Context;
    anyhow::ensure!(
        is_postgres_url(&db.to_string_lossy()) || db.join(DB_FILE).exists(),
        "no review database in {} (expected {} or a postgres:// URL)",
        db.display(),
        DB_FILE
    );
    Store::open_target(db, photos, Migrate::Check)
        .with_context(|| format!("opening {}", db.display()))
}
