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
    /// Generate synthetic photos of filled forms with exact ground truth.
    Synth(rekap::cli::synth::SynthArgs),
    /// Template tools: validate, overlay, fit check.
    Template(rekap::cli::template::TemplateArgs),
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
        Command::Synth(args) => rekap::cli::synth::run(args),
        Command::Template(a) => rekap::cli::template::run(a),
    }
}
