//! The `tracebox` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tracebox::cli::Cli::parse();
    tracebox::logging::init(cli.log_format.into());
    match tracebox::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracebox: {e:#}");
            ExitCode::FAILURE
        }
    }
}
