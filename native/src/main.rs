//! `edgetracker`: the native tracker binary. Parses flags, loads configuration, serves until
//! SIGINT/SIGTERM, then shuts down cleanly.

use std::process::ExitCode;

use clap::Parser;
use edgetracker_native::config::{Cli, Config, DEFAULT_TOML};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_config {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(&cli, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgetracker: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.log.level));
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("edgetracker: [log] level: {e}");
            return ExitCode::from(2);
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();

    let running = match edgetracker_native::start(config) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    running.wait_for_signal();
    running.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
