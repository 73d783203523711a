//! `culaunch run`: check the command, inject the audit module, run, summarise.

use std::ffi::OsStr;
use std::path::Path;

use crate::cli::{LockArgs, RunArgs};
use crate::command;
use crate::elf;
use crate::error::Error;
use crate::inject::{self, Injection};
use crate::plan::pins::Pin;
use crate::plan::{self, Plan};
use crate::report;
use crate::spawn::{self, Outcome};
use crate::trace_file::TraceFile;
use culaunch_protocol::catalogue;
use std::collections::{BTreeMap, BTreeSet};

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
        eprintln!("culaunch: the command failed; no lock written to {}", args.output.display());
        return Ok(outcome);
    }
    // The summary's own error was printed already.
    let summary = summary.ok_or(Error::NoSummary)?;
    let lock = report::lock_from(&summary)?;
    plan::lock::write(&args.output, &lock)?;
    eprintln!("culaunch: locked {} CUDA libraries in {}", lock.libs.len(), args.output.display());
    Ok(outcome)
}

/// Runs the command; the summary is computed when printed, written, or
/// `needed` by the caller.
fn run_with_summary(args: &RunArgs, needed: bool) -> Result<(Outcome, Option<report::Summary>), Error> {
    let plan = Plan::build(args)?;
    let path_var = std::env::var_os("PATH");
    let argv0 = args.command.first().map(|a| a.as_os_str()).unwrap_or(OsStr::new(""));
    let program = command::resolve(argv0, path_var.as_deref())?;
    let traceable = preflight(&program, path_var.as_deref(), &plan)?;
    let trace = TraceFile::prepare(plan.trace.as_deref())?;
    let env = if traceable {
        let injection = Injection {
            module: inject::module_path()?,
            trace: trace.path.clone(),
            all_libs: plan.all_libs,
            strict: plan.strict,
            pins: plan.pins.iter().map(|p| (p.soname.clone(), p.path.clone())).collect(),
        };
        inject::environment(&injection, std::env::var_os("LD_AUDIT").as_deref())
    } else {
        Vec::new()
    };
    tracing::debug!(program = %program.display(), ?env, "starting");
    let mut follow = args.verbose.then(|| report::Follower::new(&trace.path, trace.start));
    let mut print_new = || follow.as_mut().map_or((), report::Follower::print_new);
    let running = spawn::start(&program, &args.command, &env)?;
    let outcome = running.wait(args.verbose.then_some(&mut print_new as &mut dyn FnMut()))?;
    print_new();
    if plan.quiet && plan.summary_json.is_none() && !needed {
        return Ok((outcome, None));
    }
    // The command has run: from here on, a failure to summarise is reported
    // but never replaces the command's own exit status.
    let pins: Vec<(String, String)> =
        plan.pins.iter().map(|p| (p.soname.clone(), p.path.to_string_lossy().into_owned())).collect();
    match report::from_trace(&trace.path, trace.start, &pins) {
        Ok(summary) => {
            if !plan.quiet {
                eprint!("{}", report::text(&summary));
            }
            if let Some(json) = &plan.summary_json {
                if let Err(e) = report::write_json(&summary, json) {
                    eprintln!("culaunch: {e}");
                }
            }
            Ok((outcome, Some(summary)))
        }
        Err(e) => {
            eprintln!("culaunch: {e}");
            Ok((outcome, None))
        }
    }
}

/// Looks at the file the kernel will load and says, in one line each, why the
/// loader will not run culaunch's module in it, and what its static closure
/// already shows will go wrong with CUDA libraries. Returns false only when
/// injecting would make the loader complain (a program of another class or
/// machine); a static or setuid program still gets the environment, so its
/// dynamically linked children are traced. Never stops the start, except
/// that under `--strict` a closure problem is culaunch's error (125).
fn preflight(program: &Path, path_var: Option<&OsStr>, plan: &Plan) -> Result<bool, Error> {
    let chain = command::interpreter_chain(program, path_var);
    let Some(runs) = chain.last() else { return Ok(true) };
    let shown = runs.display();
    match elf::read_header(runs) {
        Ok(Some(h)) if !h.matches_this_build() => {
            eprintln!(
                "culaunch: warning: {shown} is a {} program; culaunch's audit module is not, so it runs untraced",
                h.describe_machine()
            );
            return Ok(false);
        }
        Ok(Some(h)) if !h.dynamic => {
            eprintln!("culaunch: warning: {shown} is statically linked: no loader runs in it, so only the dynamically linked programs it starts are traced");
        }
        Ok(Some(_)) => {
            let problems = match elf::closure(runs) {
                Ok(closure) => closure_problems(&closure, &plan.pins),
                Err(e) => {
                    tracing::debug!(file = %shown, error = %e, "cannot resolve the closure");
                    Vec::new()
                }
            };
            if plan.strict && !problems.is_empty() {
                return Err(Error::Preflight { file: runs.clone(), problems: problems.join("; ") });
            }
            for p in problems {
                eprintln!("culaunch: warning: {p}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(file = %shown, error = %e, "cannot inspect"),
    }
    if let Some(why) = secure_mode_reason(runs) {
        eprintln!("culaunch: warning: {shown} {why}: the loader ignores LD_AUDIT in it, so it runs untraced");
    }
    Ok(true)
}

/// CUDA-family trouble visible before anything runs: a DT_NEEDED that cannot
/// be found, two majors of one library in the closure, and a pin that cannot
/// serve the major the closure asks for.
fn closure_problems(c: &elf::Closure, pins: &[Pin]) -> Vec<String> {
    let name = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let by = |from: usize| {
        let p = &c.nodes[from].path;
        name(p.rsplit(|&b| b == b'/').next().unwrap_or(p))
    };
    let mut problems = Vec::new();
    let mut majors: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for e in &c.edges {
        if catalogue::family(&e.name).is_none() {
            continue;
        }
        match &e.to {
            elf::Target::Missing { tried } => problems.push(format!(
                "{}, DT_NEEDED of {}, is not found ({} places tried; `culaunch deps` lists them)",
                name(&e.name),
                by(e.from),
                tried.len()
            )),
            elf::Target::New(i) => {
                let soname = c.nodes[*i].header.soname.clone().unwrap_or_else(|| e.name.clone());
                majors.entry(catalogue::stem(&soname).to_vec()).or_default().insert(name(&soname));
            }
            elf::Target::Rejected { path, rejection, .. } => problems.push(format!(
                "{}, DT_NEEDED of {}, is refused by the loader: {}: {}",
                name(&e.name),
                by(e.from),
                name(path),
                rejection.message
            )),
            elf::Target::Repeat(_) => {}
        }
        for pin in pins {
            if catalogue::pin_match(&e.name, pin.soname.as_bytes()) == catalogue::PinMatch::OtherMajor {
                problems.push(format!(
                    "pin {} cannot serve {}, DT_NEEDED of {} (another major)",
                    pin.soname,
                    name(&e.name),
                    by(e.from)
                ));
            }
        }
    }
    for (stem, sonames) in majors.into_iter().filter(|(_, s)| s.len() > 1) {
        let list: Vec<String> = sonames.into_iter().collect();
        problems.push(format!("two majors of {} in the closure: {}", name(&stem), list.join(", ")));
    }
    problems
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
