//! The `cleanmig` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cleanmig::cli::Cli::parse();
    cleanmig::logging::init(cli.verbose, cli.quiet);
    match cleanmig::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
