use clap::{Parser, Subcommand};

/// rekap: trustworthy numbers from photos of Indonesian election tally forms.
#[derive(Parser)]
#[command(name = "rekap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify crops of single digit boxes with the digit model.
    Classify(rekap::cli::classify::ClassifyArgs),
    /// Measure results against ground truth: error rates, silent errors, calibration, report.
    Eval(rekap::cli::eval::EvalArgs),
    /// Read submissions of form photos into checked numbers with flags (JSON Lines).
    Process(rekap::cli::process::ProcessArgs),
    /// The review service: reviewers clear flags with the photo beside every number.
    Serve(rekap::cli::serve::ServeArgs),
    /// Read queued submissions from the shared database (a fleet of workers scales out).
    Worker(rekap::cli::worker::WorkerArgs),
    /// Accounts of the review service.
    User(rekap::cli::user::UserArgs),
    /// Verify or print the review service's hash-chained audit log.
    Audit(rekap::cli::audit::AuditArgs),
    /// Template tools: validate, overlay, fit check.
    Template(rekap::cli::template::TemplateArgs),
    /// Cut a synth set's digit boxes as the pipeline does: labelled model inputs (IDX).
    Crops(rekap::cli::crops::CropsArgs),
    /// Generate synthetic photos of filled forms with exact ground truth.
    Synth(rekap::cli::synth::SynthArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Classify(args) => rekap::cli::classify::run(args),
        Command::Eval(args) => {
            let code = rekap::cli::eval::run(args)?;
            std::process::exit(code)
        }
        Command::Process(args) => {
            let code = rekap::cli::process::run(args)?;
            std::process::exit(code)
        }
        Command::Serve(args) => rekap::cli::serve::run(args),
        Command::Worker(args) => {
            let code = rekap::cli::worker::run(args)?;
            std::process::exit(code)
        }
        Command::User(args) => rekap::cli::user::run(args),
        Command::Audit(args) => {
            let code = rekap::cli::audit::run(args)?;
            std::process::exit(code)
        }
        Command::Template(a) => rekap::cli::template::run(a),
        Command::Synth(args) => rekap::cli::synth::run(args),
        Command::Crops(args) => rekap::cli::crops::run(args),
    }
}
