//! culaunch: which CUDA libraries did each process of a job really load, and
//! why. `main` only parses, runs, and turns the outcome into an exit status.

// The C `main` is ours (the test harness keeps its own): see `start` for
// what std's start-up would add.
#![cfg_attr(not(test), no_main)]

#[macro_use]
mod output;
mod cli;
mod command;
mod compare;
mod cuda;
mod deps;
mod digest;
mod dirs;
mod doctor;
mod elf;
mod error;
#[cfg(test)]
mod fuzz;
mod inject;
mod input;
mod messages;
mod plan;
mod preflight;
mod probe;
mod python;
mod report;
mod rules;
mod run;
mod spawn;
#[cfg(not(test))]
mod start;
mod trace_file;
mod vocab;

use error::Error;

/// Called by libc's start code; std still reads argv and the environment
/// itself.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    start::enter(culaunch)
}

#[cfg_attr(test, allow(dead_code))]
fn culaunch() -> u8 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The version-probe helper loads a CUDA library in a process of its own.
    if args.len() == 3 && args[1] == probe::SUBCOMMAND {
        return probe::helper(&args[2]);
    }
    init_logging();
    if let Some(deps) = cli::plain_deps(&args) {
        return exit_status(deps::command(deps));
    }
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => return cli::exit_for_clap(e),
    };
    exit_status(match cli.command {
        cli::Command::Run(args) => run::run(args).map(spawn::finish_like),
        cli::Command::Lock(args) => run::lock(args).map(spawn::finish_like),
        cli::Command::Deps(args) => deps::command(args),
        cli::Command::Doctor(args) => doctor::command(args).map(|()| 0),
        cli::Command::Report(args) => report::command(&args.traces, args.json).map(|()| 0),
        cli::Command::Diff(args) => compare::command::diff(&args),
    })
}

/// The command's status, or its error printed once and turned into one.
fn exit_status(outcome: Result<u8, Error>) -> u8 {
    outcome.unwrap_or_else(|e| {
        messages::error(&e);
        if let Some(hint) = e.hint() {
            messages::hint(&hint);
        }
        e.exit_code()
    })
}

/// culaunch's own diagnostics, filtered by CULAUNCH_LOG (EnvFilter syntax), on
/// stderr; warnings only by default.
fn init_logging() {
    // Building an EnvFilter costs about a millisecond; skip it unless asked.
    if std::env::var_os("CULAUNCH_LOG").is_none() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CULAUNCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .init();
}
