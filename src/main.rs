//! The `tracebox` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tracebox::cli::Cli::parse();
    let format = cli.log_format.into();
    tracebox::logging::init(format);
    match tracebox::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracebox::logging::fatal(format, &e);
            ExitCode::FAILURE
        }
    }
}
