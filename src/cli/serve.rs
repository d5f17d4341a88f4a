//! `rekap serve --db DIR [--listen 127.0.0.1:8080] [--demo]`: the review service.

use super::process::{PipelineFiles, build_pipeline, project_file};
use crate::pipeline::discover;
use crate::recognize::DEFAULT_MODEL_CARD;
use crate::serve::{AppState, Processor, ServeConfig};
use crate::store::{Migrate, Role, Store};
use crate::template::Template;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Photos processed by `--demo` when `--demo-photos` is not given.
pub const DEFAULT_DEMO_PHOTOS: &str = "testdata/synth";
/// Folder (inside the data folder) where the pipeline writes field crops before they are stored.
const CROPS_WORK_DIR: &str = "crops-work";

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Data folder (database and photos); created when absent. With --demo and no --db, a new
    /// temporary folder. Or a PostgreSQL URL (`postgres://user@host/db`, migrated on start):
    /// then --photos names the shared photo folder and `rekap worker`s read the uploads.
    #[arg(long, value_name = "DIR|URL", required_unless_present = "demo")]
    pub db: Option<PathBuf>,
    /// With a PostgreSQL --db: the folder of content-addressed photos, shared with every worker
    /// (e.g. a network share).
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Demo: process the bundled photos into the data folder, create demo accounts (printed),
    /// and serve over plain http (implies --insecure-cookie).
    #[arg(long)]
    pub demo: bool,
    /// Photos for --demo (a folder of submissions).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DEMO_PHOTOS)]
    pub demo_photos: PathBuf,
    /// Session cookie without the Secure attribute (plain http on localhost only).
    #[arg(long)]
    pub insecure_cookie: bool,
    /// Double entry: two reviewers enter each flagged field blind; agreement accepts it,
    /// disagreement goes to a supervisor.
    #[arg(long)]
    pub double_entry: bool,
    #[command(flatten)]
    pub files: PipelineFiles,
}

/// Test model used by `--demo` while the real digit model is absent (it reads poorly: a demo
/// of the workflow, not of accuracy).
const DEMO_FALLBACK_MODEL: &str = "testdata/models/tiny.json";

fn load_pipeline(
    args: &ServeArgs,
    template: &Template,
    data: &Path,
) -> anyhow::Result<Arc<dyn Processor>> {
    let mut card_path = project_file(&args.files.model);
    if args.demo && !card_path.exists() && args.files.model == Path::new(DEFAULT_MODEL_CARD) {
        eprintln!(
            "warning: {} not found; the demo uses the tiny test model {DEMO_FALLBACK_MODEL} \
             (poor readings, many flags)",
            args.files.model.display()
        );
        card_path = project_file(Path::new(DEMO_FALLBACK_MODEL));
    }
    let (pipeline, _) = build_pipeline(
        &card_path,
        &args.files.config,
        template,
        Some(data.join(CROPS_WORK_DIR)),
    )?;
    Ok(Arc::new(pipeline))
}

/// `rekap serve --db postgres://...`: uploads and reviews against the shared database; the
/// fleet of `rekap worker`s reads the uploads.
fn run_postgres(args: ServeArgs, url: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.demo,
        "--demo uses a local data folder, not --db postgres://"
    );
    let photos = args.photos.clone().context(
        "a PostgreSQL --db needs --photos DIR: the photo folder shared with every worker",
    )?;
    let template = args.files.load_template()?;
    let store = Store::open_postgres(url, Some(&photos), Migrate::Apply)
        .with_context(|| format!("opening {}", crate::store::describe_postgres_url(url)))?;
    let config = ServeConfig {
        secure_cookie: !args.insecure_cookie,
        double_entry: args.double_entry,
        process_uploads: false,
        ..ServeConfig::default()
    };
    let state = AppState::new(store, template, config, None);
    let banner = format!(
        "rekap serve: {} photos {} (uploads are read by `rekap worker`)",
        crate::store::describe_postgres_url(url),
        photos.display()
    );
    serve_on(&args.listen, state, &[banner])
}

/// Bind `listen`, print `lines` and then the address line (tests and scripts read it to find
/// the port), and serve until shutdown.
fn serve_on(listen: &str, state: AppState, lines: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        for l in lines {
            println!("{l}");
        }
        println!("listening on http://{addr}/");
        use std::io::Write;
        std::io::stdout().flush()?;
        crate::serve::serve(listener, state).await?;
        anyhow::Ok(())
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(url) = args.db.as_ref().and_then(|d| d.to_str())
        && crate::store::is_postgres_url(url)
    {
        let url = url.to_string();
        return run_postgres(args, &url);
    }
    if args.photos.is_some() {
        eprintln!("warning: --photos is ignored: a data folder keeps its photos inside it");
    }
    let data = match (&args.db, args.demo) {
        (Some(d), _) => d.clone(),
        (None, _) => {
            let d = std::env::temp_dir().join(format!(
                "rekap-demo-{}-{}",
                std::process::id(),
                crate::store::now_ms()
            ));
            std::fs::create_dir_all(&d)?;
            d
        }
    };
    let template = args.files.load_template()?;
    let mut store = Store::open(&data)?;
    let processor = match load_pipeline(&args, &template, &data) {
        Ok(p) => Some(p),
        Err(e) if args.demo => {
            return Err(e.context(
                "--demo needs the digit model (run scripts/fetch-onnxruntime.sh; until \
                 models/digits.json exists pass --model testdata/models/tiny.json)",
            ));
        }
        Err(e) => {
            eprintln!("warning: uploads will not be processed: {e:#}");
            None
        }
    };
    let mut demo_accounts = Vec::new();
    if args.demo {
        let photos = project_file(&args.demo_photos);
        let subs = discover(std::slice::from_ref(&photos))
            .with_context(|| format!("demo photos {}", photos.display()))?;
        anyhow::ensure!(!subs.is_empty(), "no photos under {}", photos.display());
        for s in &subs {
            let (id, created) = store.add_submission_files(&s.name, &s.files)?;
            if created {
                eprintln!(
                    "demo: queued submission {id} {} ({} photos)",
                    s.name,
                    s.files.len()
                );
            }
        }
        for (name, role) in [
            ("demo", Role::Reviewer),
            ("demo-supervisor", Role::Supervisor),
        ] {
            let password = crate::store::random_hex(8)?;
            match store.add_user(name, role, &password) {
                Ok(_) => demo_accounts.push((name, role, password)),
                Err(crate::store::StoreError::Conflict(_)) => {
                    eprintln!("demo: account {name} exists already (password unchanged)")
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let config = ServeConfig {
        secure_cookie: !(args.insecure_cookie || args.demo),
        double_entry: args.double_entry,
        ..ServeConfig::default()
    };
    let state = AppState::new(store, template, config, processor);
    let mut lines = vec![format!("rekap serve: data folder {}", data.display())];
    for (name, role, pw) in &demo_accounts {
        lines.push(format!("demo account: {name} / {pw} ({})", role.as_str()));
    }
    if args.demo {
        lines.push(
            "processing the demo photos in the background; flags appear in the queue as they finish"
                .to_string(),
        );
    }
    serve_on(&args.listen, state, &lines)
}
