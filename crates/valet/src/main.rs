//! `valet`: the one binary. It runs the store and the gate, moves files, and administers keys.
//!
//! This file only parses the command line and turns the outcome into an exit code; each
//! command lives in `cmd/`.

mod cli;
mod cmd;
mod human;
mod settings;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in `valet --help` and the README.
pub mod exit {
    /// The command failed: bad input, unreadable file, and the like.
    pub const FAILURE: u8 = 1;
    /// A key was checked and denied (`valet key verify`).
    pub const DENIED: u8 = 3;
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.log_format);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("valet: {}", chain_text(&err));
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// The error and its causes, `: `-separated, each said once: an error whose message already
/// ends with its source's (`keyring file K: No such file or directory`, and the `io::Error`
/// it keeps as its source) is not followed by that source again.
fn chain_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1).map(ToString::to_string) {
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Logs go to stderr, filtered by RUST_LOG (default `info`).
fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}
