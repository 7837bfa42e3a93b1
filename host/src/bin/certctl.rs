//! certctl: the command-line client.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    certctl::cli::main(certctl::cli::Cli::parse()).await
}
