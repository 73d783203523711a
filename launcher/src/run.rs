//! `culaunch run`: check the command, inject the audit module, run, summarise.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{LockArgs, RunArgs};
use crate::command;
use crate::elf;
use crate::error::Error;
use crate::inject::{self, Injection};
use crate::messages::{self, note, warning};
use crate::plan::{self, Plan};
use crate::preflight;
use crate::report;
use crate::rules;
use crate::spawn::{self, Outcome};
use crate::trace_file::{LossToken, RunDir, TraceFile};

/// How long the pre-flight may look at the program's closure before the
/// job starts without it.
const PREFLIGHT_BUDGET: Duration = Duration::from_secs(1);

pub fn run(args: RunArgs) -> Result<Outcome, Error> {
    run_with_summary(&args, false).map(|(outcome, _)| outcome)
}

/// `culaunch lock -o FILE -- CMD`: run, then lock what the run loaded. A run
/// whose command failed writes no lock.
pub fn lock(args: LockArgs) -> Result<Outcome, Error> {
    // Fail before the command runs, not after, if the lock cannot be written.
    plan::lock::check_writable(&args.output)?;
    let (outcome, summary) = run_with_summary(&args.run, true)?;
    if outcome != Outcome::Exited(0) {
        note!("the command failed; no lock written to {}", args.output.display());
        return Ok(outcome);
    }
    // The summary's own error was printed already.
    let summary = summary.ok_or(Error::NoSummary)?;
    let lock = report::lock_from(&summary)?;
    plan::lock::write(&args.output, &lock)?;
    note!("locked {} CUDA libraries in {}", lock.libs.len(), args.output.display());
    Ok(outcome)
}

/// Runs the command; the summary is computed when printed, written, or
/// `needed` by the caller.
fn run_with_summary(args: &RunArgs, needed: bool) -> Result<(Outcome, Option<report::Summary>), Error> {
    let plan = Plan::build(args)?;
    let path_var = std::env::var_os("PATH");
    let argv0 = args.command.first().map(|a| a.as_os_str()).unwrap_or(OsStr::new(""));
    let program = command::resolve(argv0, path_var.as_deref())?;
    let (untraced, interp) = preflight(&program, path_var.as_deref(), &plan)?;
    // Without a trace of the user's, the run's directory holds the trace
    // and cannot be done without; with one, it only holds the loss tokens.
    let run_dir = match RunDir::create() {
        Ok(d) => Some(d),
        Err(e) if plan.trace.is_some() => {
            tracing::debug!(error = %e, "no run directory: every process warns of its own lost events");
            None
        }
        Err(e) => return Err(e),
    };
    let trace = TraceFile::prepare(plan.trace.as_deref(), run_dir.as_ref())?;
    let token = run_dir.as_ref().filter(|_| untraced.is_none()).and_then(LossToken::create);
    let env = if untraced.is_none() {
        let module = inject::module_path()?;
        if let Some((kind, reason)) = preflight::module_unusable(&module, interp.as_deref()) {
            return Err(Error::ModuleUnusable { path: module, kind, reason });
        }
        let injection = Injection {
            module: preflight::audit_entry(&module),
            trace: trace.path.clone(),
            all_libs: plan.all_libs,
            strict: plan.strict,
            pins: plan.pins.clone(),
            warn_token: token.as_ref().map(|t| t.path().to_path_buf()),
        };
        inject::environment(&injection, std::env::var_os("LD_AUDIT").as_deref())
    } else {
        // The summary lists it under "not traced", as the module does for
        // descendants it cannot trace.
        let reason = untraced.as_deref().unwrap_or_default();
        let line = preflight::untraced_event(&program, reason);
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&trace.path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(source) = appended {
            return Err(Error::TraceFile { path: trace.path.clone(), source });
        }
        Vec::new()
    };
    tracing::debug!(program = %program.display(), ?env, "starting");
    let running = spawn::start(&program, &args.command, &env)?;
    let root = running.pid();
    let mut follow = args.verbose.then(|| report::Follower::new(&trace.path, trace.start, root));
    let mut print_new = || follow.as_mut().map_or((), report::Follower::print_new);
    let outcome = running.wait(args.verbose.then_some(&mut print_new as &mut dyn FnMut()))?;
    print_new();
    // A user's trace gets what the run learned appended, so it is needed
    // even when nothing is printed.
    if plan.quiet && plan.summary_json.is_none() && !needed && plan.trace.is_none() {
        return Ok((outcome, None));
    }
    // The command has run: from here on, a failure to summarise is reported
    // but never replaces the command's own exit status.
    let pins: Vec<(String, String)> =
        plan.pins.iter().map(|p| (p.soname.clone(), p.path.to_string_lossy().into_owned())).collect();
    let incomplete = token.as_ref().is_some_and(LossToken::taken);
    match report::from_trace(&trace.read_path(), trace.start, &pins, Some(root)) {
        Ok(mut summary) => {
            summary.trace_incomplete |= incomplete;
            if plan.trace.is_some() {
                // A trace that lost events says so once, in the summary; a
                // failure to append the facts to it is no news.
                if let Err(e) = report::append_facts(&trace.path, &summary) {
                    if !incomplete {
                        messages::error(&e);
                    }
                }
            }
            if !plan.quiet {
                eprint!("{}", report::stderr_text(&summary, own_rank(), args.verbose));
            }
            if let Some(json) = &plan.summary_json {
                if let Err(e) = report::write_json(&summary, json) {
                    messages::error(&e);
                }
            }
            Ok((outcome, Some(summary)))
        }
        Err(e) => {
            messages::error(&e);
            Ok((outcome, None))
        }
    }
}

/// culaunch's own rank, when a launcher started it as one of a job's ranks.
fn own_rank() -> Option<i64> {
    crate::compare::identity(|k| std::env::var(k).ok()).rank
}

/// Looks at the file the kernel will load and says, in one line each, why the
/// loader will not run culaunch's module in it, and what its static closure
/// already shows will go wrong with CUDA libraries. Returns why it is not
/// injected only when injecting would make the loader complain (a program
/// of another class or machine); a static or setuid program still gets the
/// environment, so its dynamically linked children are traced. Also returns
/// the loader the program asks for (PT_INTERP). Never stops the start, except
/// that under `--strict` a closure problem is culaunch's error (125).
fn preflight(
    program: &Path,
    path_var: Option<&OsStr>,
    plan: &Plan,
) -> Result<(Option<String>, Option<Vec<u8>>), Error> {
    let chain = command::interpreter_chain(program, path_var);
    let Some(runs) = chain.last() else { return Ok((None, None)) };
    let shown = runs.display();
    let mut interp = None;
    match elf::read_header(runs) {
        Ok(Some(h)) if !h.matches_this_build() => {
            warning!(
                "{shown} is a {} program; culaunch's audit module is not, so it runs untraced",
                h.describe_machine()
            );
            let why = format!("it is a {} program; culaunch's audit module is not", h.describe_machine());
            return Ok((Some(why), None));
        }
        Ok(Some(h)) if h.is_dynamic_loader() => {
            // `ld.so PROGRAM`: the command is the loader, which reads
            // LD_AUDIT and audits the program it runs as any other.
            interp = Some(runs.as_os_str().as_bytes().to_vec());
        }
        Ok(Some(h)) if !h.dynamic => {
            warning!("{shown} is statically linked: no loader runs in it, so only the dynamically linked programs it starts are traced");
        }
        Ok(Some(h)) => {
            interp = h.interp;
            // Bounded: a file with thousands of RPATH entries and DT_NEEDED
            // is the loader's to fail on, not a reason to delay the start.
            let ctx = elf::Context { deadline: Some(Instant::now() + PREFLIGHT_BUDGET), ..elf::Context::here() };
            let problems = match elf::closure_in(runs, &ctx) {
                Ok(closure) => rules::closure(&closure, &plan.pins),
                Err(e) => {
                    tracing::debug!(file = %shown, error = %e, "cannot resolve the closure");
                    Vec::new()
                }
            };
            if plan.strict && !problems.is_empty() {
                let messages: Vec<&str> = problems.iter().map(|d| d.message.as_str()).collect();
                return Err(Error::Preflight { file: runs.clone(), problems: messages.join("; ") });
            }
            for p in problems {
                warning!("{}", p.message);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(file = %shown, error = %e, "cannot inspect"),
    }
    if let Some(why) = secure_mode_reason(runs) {
        warning!("{shown} {why}: the loader ignores LD_AUDIT in it, so it runs untraced");
    }
    Ok((None, interp))
}

/// setuid, setgid or file capabilities put the loader in secure mode.
fn secure_mode_reason(file: &Path) -> Option<&'static str> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    if mode & 0o4000 != 0 {
        return Some("is setuid");
    }
    if mode & 0o2000 != 0 {
        return Some("is setgid");
    }
    has_file_capabilities(file).then_some("has file capabilities")
}

fn has_file_capabilities(file: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(file.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path; a null buffer of size 0 asks only for the size.
    let n = unsafe { libc::getxattr(c_path.as_ptr(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}
