//! The `kedge` binary: command line and wiring only.

mod cli;
mod host;
mod local_client;
mod server;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        cli::Command::Server(args) => {
            cli::init_logging(&args.log_format, args.verbosity);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("kedge: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(server::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("kedge: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
