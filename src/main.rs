use std::process::ExitCode;

use clap::Parser;
use secretsync::cli::Cli;

fn main() -> ExitCode {
    secretsync::cli::run(Cli::parse())
}
