//! Command-line types (docs/trace-schema.md, "Commands"). `culaunch CMD…` means
//! `culaunch run CMD…`; everything after COMMAND belongs to COMMAND.

use std::ffi::OsString;
use std::path::PathBuf;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::error::EXIT_CULAUNCH;

#[derive(Debug, Parser)]
#[command(
    name = "culaunch",
    version,
    about = "Which CUDA libraries did each process of a job really load, and why.",
    override_usage = "culaunch [RUN-OPTIONS] [--] COMMAND [ARGS...]\n       culaunch <SUBCOMMAND> ..."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Deferred: only the subcommand being run builds its arguments (building
// all six was a fifth of a `culaunch deps` of a small library).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run COMMAND traced (the default when no subcommand is given).
    Run(RunArgs),
    /// Run COMMAND, then write a lock file of the CUDA libraries it loaded.
    Lock(LockArgs),
    /// The dependency tree of an ELF file, resolved as the loader would, without running it.
    Deps(DepsArgs),
    /// The CUDA installations and driver a job could pick up, and what will bite.
    Doctor(DoctorArgs),
    /// Summarise trace files written earlier (for instance one per rank).
    Report(ReportArgs),
    /// What differs between two runs' CUDA libraries: file, release, provenance, search step.
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Append every event of every process in the tree to FILE, as JSON Lines.
    #[arg(short = 't', long, value_name = "FILE", env = "CULAUNCH_TRACE")]
    pub trace: Option<PathBuf>,

    /// Record every shared object, not only the CUDA family.
    #[arg(long)]
    pub all_libs: bool,

    /// Print no summary at the end.
    #[arg(short, long)]
    pub quiet: bool,

    /// Also print one line per CUDA-family load as it happens (pid, SONAME,
    /// path, how, requester).
    #[arg(short, long)]
    pub verbose: bool,

    /// Also write the end-of-run summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Every request for SONAME maps PATH, exactly once per process. Repeatable.
    #[arg(long = "pin", value_name = "SONAME=PATH", value_parser = OsStringValueParser::new().try_map(|s| parse_pin(&s)))]
    pub pins: Vec<PinArg>,

    /// Pin every CUDA-family library found under DIR (a toolkit root, a conda
    /// env, a pip site-packages or nvidia/ tree).
    #[arg(long, value_name = "DIR")]
    pub toolkit: Option<PathBuf>,

    /// Read these settings from a TOML file; command-line options win.
    #[arg(short = 'c', long, value_name = "FILE", env = "CULAUNCH_CONFIG")]
    pub config: Option<PathBuf>,

    /// Refuse any CUDA-family load that the pins or the lock do not allow.
    #[arg(long)]
    pub strict: bool,

    /// Enforce a lock file: its pins, --strict, and each file's sha256.
    #[arg(long, value_name = "FILE")]
    pub locked: Option<PathBuf>,

    /// The command to run, and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `--pin SONAME=PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinArg {
    pub soname: String,
    pub path: PathBuf,
}

/// `SONAME=PATH`, split at the first `=`; PATH keeps any bytes, a SONAME is
/// text.
pub(crate) fn parse_pin(s: &OsStr) -> Result<PinArg, String> {
    let bytes = s.as_bytes();
    let parsed = bytes.iter().position(|&b| b == b'=').and_then(|i| {
        let soname = std::str::from_utf8(&bytes[..i]).ok().filter(|n| !n.is_empty())?;
        let path = &bytes[i + 1..];
        (!path.is_empty()).then(|| PinArg { soname: soname.to_owned(), path: PathBuf::from(OsStr::from_bytes(path)) })
    });
    parsed.ok_or_else(|| format!("expected SONAME=PATH, got {:?}", s.to_string_lossy()))
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Where to write the lock file.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "culaunch.lock")]
    pub output: PathBuf,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct DepsArgs {
    /// Print the closure as JSON.
    #[arg(long, conflicts_with = "ldd")]
    pub json: bool,

    /// Print one `NAME => PATH` line per library, in ldd's order.
    #[arg(long)]
    pub ldd: bool,

    /// Show every request, repeats of libraries already shown included.
    #[arg(long)]
    pub all: bool,

    /// Also report what `ldd -r` reports: undefined symbols and missing
    /// version nodes, read from the files (nothing is run or relocated),
    /// each with the provider that lacks it and a file that has it. Exits 1
    /// when it reports any.
    #[arg(long)]
    pub check: bool,

    /// Answer for an image or sysroot: FILE and every path are looked up
    /// inside DIR, with DIR's ld.so.cache and its glibc's rules.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The executable or shared object.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,

    /// The Python whose site-packages to inspect (default: the first python3 on PATH).
    #[arg(long, value_name = "PY")]
    pub python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,

    /// Trace files (JSON Lines) to summarise together.
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Print the differences as JSON.
    #[arg(long)]
    pub json: bool,

    /// The first run: a trace file, or a directory of them (its *.jsonl).
    #[arg(value_name = "A")]
    pub a: PathBuf,

    /// The second run, the same way.
    #[arg(value_name = "B")]
    pub b: PathBuf,
}

const SUBCOMMANDS: &[&str] = &["run", "lock", "deps", "doctor", "report", "diff", "help"];
const TOP_LEVEL_FLAGS: &[&str] = &["-h", "--help", "-V", "--version"];

/// Parses argv, reading `culaunch [RUN-OPTIONS] [--] COMMAND…` as `run`.
/// Bare `culaunch` is a usage error (125, as for `timeout`), with the short
/// usage of both forms.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.len() <= 1 {
        return Err(command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, "a COMMAND to run, or a subcommand, is required"));
    }
    // The top-level help text costs as much to build as the rest of the
    // parse: build it only when it may be shown.
    let mut cmd = match args[1].to_str() {
        Some("-h" | "--help" | "help") => command(),
        _ => Cli::command(),
    };
    let matches = cmd.try_get_matches_from_mut(with_default_subcommand(args))?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// `culaunch deps [--json | --ldd | --all | --check]... FILE`, the forms
/// scripts run over many files, read without clap: building clap's parser
/// costs about an eighth of a `deps` of a small library. Anything else (another
/// option, `--`, help, a flag given twice, `--json` with `--ldd`, an empty
/// FILE or one that starts with `-`) is None, for clap to read and, where
/// wrong, to explain. The test `plain_deps_agrees_with_clap` holds the two
/// to the same answers.
pub fn plain_deps(args: &[OsString]) -> Option<DepsArgs> {
    let [_, sub, rest @ ..] = args else { return None };
    let (file, flags) = rest.split_last()?;
    if sub != "deps" || file.is_empty() || file.as_bytes().starts_with(b"-") {
        return None;
    }
    let mut a = DepsArgs { json: false, ldd: false, all: false, check: false, root: None, file: PathBuf::from(file) };
    for flag in flags {
        let set = match flag.as_bytes() {
            b"--json" => &mut a.json,
            b"--ldd" => &mut a.ldd,
            b"--all" => &mut a.all,
            b"--check" => &mut a.check,
            _ => return None,
        };
        if std::mem::replace(set, true) {
            return None;
        }
    }
    (!(a.json && a.ldd)).then_some(a)
}

/// The clap command, with top-level help that also lists the run options
/// (the default command's) and a few real examples.
fn command() -> clap::Command {
    let mut help = String::from("Run options (culaunch [RUN-OPTIONS] [--] COMMAND; more in `culaunch run --help`):\n");
    let run = RunArgs::augment_args(clap::Command::new("run"));
    for a in run.get_arguments().filter(|a| !a.is_positional() && a.get_id() != "help") {
        let mut flag = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) => format!("    --{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, None) => continue,
        };
        if let Some(v) = a.get_value_names().and_then(|v| v.first()) {
            if a.get_action().takes_values() {
                flag = format!("{flag} <{v}>");
            }
        }
        let text = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let first = text.split(". ").next().unwrap_or_default().trim_end_matches('.');
        help.push_str(&wrap(&format!("  {flag:<28} "), first, HELP_WIDTH));
    }
    help.push_str(EXAMPLES);
    Cli::command().after_help(help)
}

/// Fits the help to an 100-column terminal.
const HELP_WIDTH: usize = 100;

/// `head` then `text` broken at blanks to `width` columns, continuation
/// lines under the text's start.
fn wrap(head: &str, text: &str, width: usize) -> String {
    let indent = head.len();
    let mut out = head.to_owned();
    let mut col = indent;
    for word in text.split(' ') {
        if col > indent && col + 1 + word.len() > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > indent {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out.push('\n');
    out
}

const EXAMPLES: &str = "
Examples:
  culaunch -- python train.py                        trace a job; the summary goes to stderr
  culaunch -t trace.jsonl -v -- python train.py      keep the trace; print each CUDA load at once
  culaunch --pin libcudart.so.12=/opt/cuda/lib64/libcudart.so.12 -- python train.py
                                                     load exactly this libcudart.so.12
  culaunch lock -o culaunch.lock -- python train.py  run, then lock what it loaded
  culaunch --locked culaunch.lock -- python train.py enforce the lock (pins, strict, sha256)
  culaunch deps site-packages/torch/lib/libtorch_cuda.so
                                                     what the loader would resolve, without running
  mpirun -np 4 culaunch -q -t trace.%q{OMPI_COMM_WORLD_RANK}.jsonl -- python train.py
  culaunch report trace.*.jsonl                      one trace per rank, summarised across ranks

Exit status: the command's own (death by a signal is repeated on culaunch); 125 culaunch's own
failure, 126 the command cannot be executed, 127 not found.";

fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let explicit =
        args.get(1).is_some_and(|first| SUBCOMMANDS.iter().chain(TOP_LEVEL_FLAGS).any(|s| first.as_os_str() == *s));
    if !explicit && !args.is_empty() {
        args.insert(1, "run".into());
    }
    args
}

/// Help and version go to stdout with status 0; usage errors exit 125, so a
/// supervisor can tell culaunch's failure from the command's.
pub fn exit_for_clap(e: clap::Error) -> u8 {
    let _ = e.print();
    if e.use_stderr() {
        EXIT_CULAUNCH
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn plain_deps_agrees_with_clap() {
        use std::os::unix::ffi::OsStringExt;
        // Every argv of up to four words after `deps` from these: wherever
        // the fast path answers, clap answers the same; wherever clap
        // refuses, the fast path leaves it to clap.
        let words = ["--json", "--ldd", "--all", "--check", "--root", "lib.so", "-", "", "--", "-h", "--jso", "-j"];
        let mut answered = 0;
        let mut argv = vec![OsString::from("culaunch"), OsString::from("deps")];
        let mut check = |argv: &[OsString]| {
            let fast = plain_deps(argv);
            match parse(argv.iter().cloned()) {
                Ok(Cli { command: Command::Deps(slow) }) => {
                    if let Some(fast) = fast {
                        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{argv:?}");
                        answered += 1;
                    }
                }
                other => assert!(fast.is_none(), "{argv:?}: clap says {other:?}, the fast path {fast:?}"),
            }
        };
        fn each(argv: &mut Vec<OsString>, words: &[&str], left: usize, f: &mut dyn FnMut(&[OsString])) {
            f(argv);
            if left == 0 {
                return;
            }
            for w in words {
                argv.push(OsString::from(w));
                each(argv, words, left - 1, f);
                argv.pop();
            }
        }
        each(&mut argv, &words, 4, &mut check);
        // `deps FILE` with each ordered choice of up to three distinct
        // flags, less those with both --json and --ldd: 1 + 4 + 10 + 12.
        assert_eq!(answered, 27);
        let odd = [OsString::from("culaunch"), "deps".into(), OsString::from_vec(b"\xff.so".to_vec())];
        assert_eq!(plain_deps(&odd).map(|a| a.file), Some(PathBuf::from(OsString::from_vec(b"\xff.so".to_vec()))));
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        match parse(argv.iter().map(OsString::from)) {
            Ok(Cli { command: Command::Run(r) }) => r,
            other => panic!("{argv:?} did not parse as run: {other:?}"),
        }
    }

    #[test]
    fn bare_command_is_run() {
        let r = run_args(&["culaunch", "--", "python", "train.py"]);
        assert_eq!(r.command, vec![OsString::from("python"), "train.py".into()]);
        let r = run_args(&["culaunch", "python", "train.py"]);
        assert_eq!(r.command.len(), 2);
    }

    #[test]
    fn options_after_the_command_belong_to_the_command() {
        let r = run_args(&["culaunch", "-q", "python", "-q", "--trace", "x"]);
        assert!(r.quiet);
        assert_eq!(r.trace, None);
        assert_eq!(r.command, ["python", "-q", "--trace", "x"].map(OsString::from).to_vec());
    }

    #[test]
    fn a_command_named_like_a_subcommand_runs_after_dashes() {
        let r = run_args(&["culaunch", "--", "report"]);
        assert_eq!(r.command, vec![OsString::from("report")]);
    }

    #[test]
    fn non_utf8_arguments_survive() {
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let cli = parse([OsString::from("culaunch"), "echo".into(), odd.clone()]);
        match cli {
            Ok(Cli { command: Command::Run(r) }) => assert_eq!(r.command[1], odd),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pins_repeat_and_lock_takes_run_options() {
        let r = run_args(&["culaunch", "--pin", "libcudart.so.12=/a/b", "--pin", "libcublas.so.12=/c", "x"]);
        assert_eq!(r.pins[0], PinArg { soname: "libcudart.so.12".into(), path: "/a/b".into() });
        assert_eq!(r.pins.len(), 2);
        assert!(parse(["culaunch", "--pin", "nonsense", "x"].map(OsString::from)).is_err());
        use std::os::unix::ffi::OsStringExt;
        let odd = OsString::from_vec(b"libcudart.so.12=/a/\xff/libcudart.so.12".to_vec());
        let p = parse_pin(&odd).unwrap();
        assert_eq!(p.path.as_os_str().as_bytes(), b"/a/\xff/libcudart.so.12");
        match parse(["culaunch", "lock", "-o", "l.toml", "--strict", "--", "python"].map(OsString::from)) {
            Ok(Cli { command: Command::Lock(l) }) => {
                assert_eq!(l.output, PathBuf::from("l.toml"));
                assert!(l.run.strict);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn top_level_help_lists_run_options_and_examples() {
        let help = command().render_help().to_string();
        assert!(help.lines().all(|l| l.chars().count() <= HELP_WIDTH), "{help}");
        for want in [
            "--trace <FILE>",
            "--pin <SONAME=PATH>",
            "--locked <FILE>",
            "culaunch run --help",
            "Examples:",
            "report trace.*.jsonl",
        ] {
            assert!(help.contains(want), "{want} missing from:\n{help}");
        }
    }

    #[test]
    fn bare_culaunch_is_a_usage_error_naming_both_forms() {
        let e = parse([OsString::from("culaunch")]).unwrap_err();
        assert!(e.use_stderr());
        let text = e.render().to_string();
        assert!(text.contains("culaunch [RUN-OPTIONS] [--] COMMAND") && text.contains("<SUBCOMMAND>"), "{text}");
        assert!(!text.contains("culaunch run <COMMAND>"), "{text}");
    }

    #[test]
    fn diff_is_a_subcommand_and_after_dashes_the_diff_program() {
        match parse(["culaunch", "diff", "--json", "a", "b"].map(OsString::from)) {
            Ok(Cli { command: Command::Diff(d) }) => assert!(d.json && d.a == Path::new("a")),
            other => panic!("{other:?}"),
        }
        let r = run_args(&["culaunch", "--", "diff", "-u", "a", "b"]);
        assert_eq!(r.command, ["diff", "-u", "a", "b"].map(OsString::from).to_vec());
    }

    #[test]
    fn report_takes_files() {
        match parse(["culaunch", "report", "--json", "a", "b"].map(OsString::from)) {
            Ok(Cli { command: Command::Report(r) }) => {
                assert!(r.json);
                assert_eq!(r.traces.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }
}
