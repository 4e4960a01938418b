//! `valet`: the one binary. It runs the store and the gate, moves files, and administers keys.
//!
//! This file only parses the command line and turns the outcome into an exit code; each
//! command lives in `cmd/`.

mod cli;
mod cmd;
mod human;

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
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("valet: {err:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
