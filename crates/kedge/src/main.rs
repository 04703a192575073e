//! The `kedge` binary: command line and wiring only.

mod agent;
mod backup;
mod certificate;
mod checkconfig;
mod cli;
mod host;
mod local_client;
mod sdnotify;
mod server;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        cli::Command::CheckConfig(args) => check_config(&args),
        cli::Command::Backup(args) => backup::run_backup(&args.data_dir, &args.to),
        cli::Command::Restore(args) => backup::run_restore(&args.data_dir, &args.from),
        cli::Command::Certificate(args) => certificate::run(&args),
        cli::Command::Server(args) => {
            let log = args.log.clone();
            run_daemon(&log, server::run(*args))
        }
        cli::Command::Agent(args) => {
            let log = args.log.clone();
            run_daemon(&log, agent::run(*args))
        }
    }
}

/// Runs a long-running command (`server`, `agent`) on a small runtime;
/// errors end it with one line and a non-zero exit.
fn run_daemon(
    log: &cli::LogArgs,
    main: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    sdnotify::take_socket_from_env();
    cli::init_logging(&log.log_format, log.verbosity);
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
    match rt.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = one_line(&e);
            tracing::error!("{msg}");
            eprintln!("kedge: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `kedge check-config`: every host requirement, one line each; with
/// `--accelerators`, what the built-in device plugins find instead (JSON).
fn check_config(args: &cli::CheckConfigArgs) -> ExitCode {
    if !args.accelerators {
        let checks = checkconfig::run_checks(std::path::Path::new("/"), &args.data_dir);
        return checkconfig::print_report(&checks);
    }
    let report = kedge_devices::builtin::accelerator_report(
        &args.accelerator_root,
        &kedge_devices::builtin::BuiltinConfig::default(),
    );
    println!("{}", report.to_json());
    ExitCode::SUCCESS
}

/// The error and its causes on one line, each cause once: library errors
/// often repeat their source in their own message.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let inner = std::io::Error::other("socket missing");
        let e = anyhow::Error::new(inner).context("cannot connect: socket missing");
        let e = e.context("the agent could not start");
        assert_eq!(
            one_line(&e),
            "the agent could not start: cannot connect: socket missing"
        );
    }
}
