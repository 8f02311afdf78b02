//! The `crossdistill` binary: run the command, print errors with their causes, exit 0/1/2.

use std::process::ExitCode;

use crossdistill::cli::{run, Outcome};
use crossdistill::process_settings::tune_process;

fn main() -> ExitCode {
    tune_process();
    match run() {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(error) => {
            let error = anyhow::Error::new(error);
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
