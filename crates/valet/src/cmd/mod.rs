//! The commands, one module per top-level verb.

mod http;
mod key;
mod serve;
pub(crate) mod transfer;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs one parsed command line; the exit code is the command's to choose.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key(cmd) => key::run(cmd),
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Get(args) => transfer::run_get(args),
        Command::Put(args) => transfer::run_put(args),
    }
}
