//! `culaunch deps`: the closure as a tree (with the rule that found each
//! library), as ldd's lines, or as JSON. Output on stdout: it is what was
//! asked for.

use std::ffi::OsStr;
use std::fmt::Write;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use culaunch_protocol::catalogue;
use serde::Serialize;

use crate::cli::DepsArgs;
use crate::elf::symbols::{self, Problem};
use crate::elf::{self, Closure, Context, Reason, Target, INTERP, ROOT};
use crate::error::Error;
use crate::rules::{self, Explanation, FailReason, Failure, Scene};

/// `deps --check` found something to report (ldd -r would print it).
const EXIT_PROBLEMS: u8 = 1;

pub fn command(args: DepsArgs) -> Result<u8, Error> {
    let fail = |source| Error::Deps { path: args.file.clone(), source };
    let mut ctx = Context::here();
    ctx.root.clone_from(&args.root);
    let closure = elf::closure_in(&args.file, &ctx).map_err(fail)?;
    let progname = progname(&closure, &args);
    let problems = if args.check {
        let p = symbols::check(&closure, &progname).map_err(fail)?;
        Some(explain_all(&closure, &ctx, p))
    } else {
        None
    };
    let out = if args.json {
        (serde_json::to_string_pretty(&json(&closure, problems.as_deref())).unwrap_or_default() + "\n").into_bytes()
    } else if args.ldd {
        // ldd's lines stay ldd's, byte for byte; what explains them goes
        // to stderr.
        for (p, e) in problems.iter().flatten() {
            crate::messages::note!("{}: {}", p.line.trim_start(), e.advice);
        }
        ldd(&closure, problems.as_deref())
    } else {
        let mut t = tree(&closure, args.all);
        if let Some(p) = &problems {
            t.extend_from_slice(check_text(p).as_bytes());
        }
        t
    };
    // Where the loader stops: at the file itself once mapped (the program,
    // or the library ldd maps), else at the first refusal in load order.
    let root = &closure.nodes[ROOT];
    let stop = elf::bloom_assertion(&root.header.dynamic_info).map(|m| (s(&root.path), m)).or_else(|| {
        let e = closure.first_rejection()?;
        let Target::Rejected { path, rejection, .. } = &e.to else { return None };
        let named = if rejection.names_request { &e.name } else { path };
        Some((s(&e.name), format!("{}: {}", s(named), rejection.message)))
    });
    if let Some((at, why)) = stop {
        eprintln!("culaunch: warning: the loader stops at {at}: {why} (the program would not start)");
    }
    // The process ends next: freeing the closure piece by piece cost a
    // twelfth of `deps` on a torch library.
    std::mem::forget(closure);
    crate::output::write_bytes(&out);
    Ok(if problems.is_some_and(|p| !p.is_empty()) { EXIT_PROBLEMS } else { 0 })
}

/// The program as ldd names it: the path given, with "./" before a bare
/// name (ldd's own rewriting), or the path inside the root.
fn progname(c: &Closure, args: &DepsArgs) -> Vec<u8> {
    let p = if c.root.is_some() { c.nodes[ROOT].path.clone() } else { args.file.as_os_str().as_bytes().to_vec() };
    if p.contains(&b'/') {
        p
    } else {
        [b"./", &p[..]].concat()
    }
}

/// Each of `problems` with its explanation. One provider lacking one
/// symbol is explained once, however many relocations name it; a clean
/// check never pays for the places to look in.
fn explain_all(c: &Closure, ctx: &Context, problems: Vec<Problem>) -> Vec<(Problem, Explanation)> {
    if problems.is_empty() {
        return Vec::new();
    }
    let scene = scene(c, ctx);
    type Key = (usize, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);
    let mut memo: std::collections::HashMap<Key, Explanation> = Default::default();
    problems
        .into_iter()
        .map(|p| {
            let key = (p.requester_node, p.vn_file.clone(), p.symbol_bytes.clone(), p.version_bytes.clone());
            let e = memo.entry(key).or_insert_with(|| rules::explain(&mut failure_of(c, &p), &scene)).clone();
            (p, e)
        })
        .collect()
}

/// The failure one `ldd -r` line reports, for [`rules::explain`].
fn failure_of(c: &Closure, p: &Problem) -> Failure {
    let name = |i: usize| s(&c.nodes[i].path);
    let mut f = match &p.finding {
        symbols::Finding::UndefinedSymbol { symbol, .. } => {
            let mut f = Failure::new(FailReason::UndefinedSymbol);
            f.symbol = Some(symbol.clone());
            f
        }
        symbols::Finding::MissingVersion { .. } | symbols::Finding::NoVersionInformation { .. } => {
            let mut f = Failure::new(FailReason::MissingVersion);
            f.object = p.provider_node.map(name);
            f
        }
    };
    f.required_by = Some(name(p.requester_node));
    f.version = p.version_bytes.as_deref().map(s);
    // ldd's line is the report here; glibc's words are not rebuilt.
    f.error = Some(p.line.clone());
    f
}

/// The closure as the explanation sees it: every object in load order with
/// the rule that found it, the program as the top, the environment of the
/// check, and the installations doctor knows (the wheels of the sites the
/// closure's files are in).
fn scene<'a>(c: &'a Closure, ctx: &Context) -> Scene<'a> {
    let path = |b: &[u8]| PathBuf::from(OsStr::from_bytes(b));
    let loaded: Vec<(PathBuf, Option<String>)> = c
        .nodes
        .iter()
        .map(|n| {
            let step = n.reason.as_ref().map(|r| {
                match r {
                    Reason::Direct => "direct",
                    Reason::Rpath { .. } | Reason::Runpath => "rpath_runpath",
                    Reason::LdLibraryPath => "ld_library_path",
                    Reason::LdSoCache => "ld.so.cache",
                    Reason::Default => "default",
                }
                .to_owned()
            });
            (path(&n.path), step)
        })
        .collect();
    let mut sites: Vec<PathBuf> = Vec::new();
    for (p, _) in &loaded {
        let host = match &c.root {
            Some(r) => r.join(p.strip_prefix("/").unwrap_or(p)),
            None => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        };
        if let Some(site) = crate::report::machine::site_root(&host) {
            if !sites.iter().any(|s| s == site) {
                sites.push(site.to_path_buf());
            }
        }
    }
    Scene {
        loaded,
        dlopened: Default::default(),
        requests: Vec::new(),
        top: Some(path(&c.nodes[ROOT].path)),
        program: None,
        job_programs: Vec::new(),
        undone: Default::default(),
        ctx: Context { root: ctx.root.clone(), ld_library_path: ctx.ld_library_path.clone(), deadline: None },
        installations: crate::doctor::installation_places(&|k| std::env::var_os(k), &sites),
        platform: Some(&c.platform),
        files: Default::default(),
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// ldd's lines: every library in load order, `NAME => PATH`, missing ones as
/// `NAME => not found`, the program interpreter last. A library requested by
/// path is shown by its path alone, as ldd does when name and path agree.
/// With `--check`, `ldd -r`'s reports around them, in its order: version
/// problems before the list, undefined symbols after it.
fn ldd(c: &Closure, problems: Option<&[(Problem, Explanation)]>) -> Vec<u8> {
    let mut out = Vec::new();
    // One line: a tab, then the pieces, bytes as the file system has them.
    let line = |out: &mut Vec<u8>, pieces: &[&[u8]]| {
        out.push(b'\t');
        pieces.iter().for_each(|p| out.extend_from_slice(p));
        out.push(b'\n');
    };
    let problems = problems.unwrap_or_default();
    let is_symbol = |p: &Problem| matches!(p.finding, symbols::Finding::UndefinedSymbol { .. });
    for (p, _) in problems.iter().filter(|(p, _)| !is_symbol(p)) {
        let _ = writeln!(out, "{}", p.line);
    }
    if c.without_needed() {
        line(&mut out, &[b"statically linked"]);
    } else {
        // The loader's list order: the interpreter where it is first
        // needed (rtld.c moves its map there); nowhere when nothing needs
        // it (rtld.c takes it out of the list). "There" is right after the
        // object before it in the search list, which holds only the
        // libraries found: a missing one listed after that object, even
        // if it was asked for before the interpreter, comes after it.
        let first_need = c.edges.iter().position(|e| matches!(e.to, Target::Repeat(INTERP)));
        // The edge after whose line the interpreter goes (None: first).
        let after = first_need.and_then(|n| c.edges[..n].iter().rposition(|e| matches!(e.to, Target::New(_))));
        if first_need.is_some() && after.is_none() {
            line(&mut out, &[&c.nodes[INTERP].path]);
        }
        for (k, e) in c.edges.iter().enumerate() {
            match &e.to {
                // ldd writes the name alone where the file's name is it
                // (a path, or found through an empty entry: the current
                // directory).
                Target::New(i) if e.name.contains(&b'/') || e.name == c.nodes[*i].path => {
                    line(&mut out, &[&c.nodes[*i].path])
                }
                Target::New(i) => line(&mut out, &[&e.name, b" => ", &c.nodes[*i].path]),
                Target::Missing { .. } => line(&mut out, &[&e.name, b" => not found"]),
                Target::Rejected { path, rejection, .. } => {
                    line(&mut out, &[&e.name, b" => ", path, b" (refused: ", rejection.message.as_bytes(), b")"]);
                }
                Target::Repeat(_) => {}
            }
            if first_need.is_some() && after == Some(k) {
                line(&mut out, &[&c.nodes[INTERP].path]);
            }
        }
    }
    for (p, _) in problems.iter().filter(|(p, _)| is_symbol(p)) {
        let _ = writeln!(out, "{}", p.line);
    }
    out
}

/// The check's lines for the tree view, each with its explanation.
fn check_text(problems: &[(Problem, Explanation)]) -> String {
    let mut out = String::new();
    if problems.is_empty() {
        let _ = writeln!(out, "\ncheck: no undefined symbols, no missing versions");
        return out;
    }
    let _ = writeln!(out, "\ncheck: {} problem(s), as ldd -r reports them:", problems.len());
    for (p, e) in problems {
        let _ = writeln!(out, "{}", p.line);
        if let Some(provider) = &e.provider {
            let step = e.provider_search.as_ref().map(|s| format!(" (found by {s})")).unwrap_or_default();
            let _ = writeln!(out, "    provider loaded: {provider}{step}");
        }
        if let Some(alt) = &e.alternative {
            let _ = writeln!(out, "    has it: {alt} ({})", e.found_in.as_deref().unwrap_or("?"));
        }
        let _ = writeln!(out, "    {}", e.advice);
    }
    out
}

fn reason_text(r: &Reason) -> std::borrow::Cow<'static, str> {
    match r {
        Reason::Direct => "direct".into(),
        Reason::Rpath { of } => format!("rpath of {}", of.rsplit('/').next().unwrap_or(of)).into(),
        Reason::LdLibraryPath => "ld_library_path".into(),
        Reason::Runpath => "runpath".into(),
        Reason::LdSoCache => "ld.so.cache".into(),
        Reason::Default => "default".into(),
    }
}

/// Ends a tree line: the CUDA family of `name`, if it has one, then the newline.
fn cuda_mark(name: &[u8], out: &mut Vec<u8>) {
    if let Some(f) = catalogue::family(name) {
        let _ = write!(out, "  [CUDA {f}]");
    }
    out.push(b'\n');
}

/// The tree, libtree-style: each library under the object that first asked
/// for it, with the rule that found it. Names and paths are the file's and
/// the file system's bytes, as ldd and libtree print them.
fn tree(c: &Closure, all: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 * c.nodes.len());
    out.extend_from_slice(&c.nodes[ROOT].path);
    out.push(b'\n');
    if c.without_needed() {
        out.extend_from_slice(b"    (no DT_NEEDED: nothing else is loaded; ldd says \"statically linked\")\n");
    }
    // Each object's DT_NEEDED edges, in order: one pass, not one scan of
    // every edge per object.
    let mut by_from: Vec<Vec<usize>> = vec![Vec::new(); c.nodes.len()];
    for (k, e) in c.edges.iter().enumerate() {
        if let Some(list) = by_from.get_mut(e.from) {
            list.push(k);
        }
    }
    print_children(c, &by_from, ROOT, 1, all, &mut out);
    out
}

fn print_children(c: &Closure, by_from: &[Vec<usize>], from: usize, depth: usize, all: bool, out: &mut Vec<u8>) {
    let indent = |out: &mut Vec<u8>| out.resize(out.len() + 4 * depth, b' ');
    for e in by_from.get(from).into_iter().flatten().map(|&k| &c.edges[k]) {
        match &e.to {
            Target::New(i) => {
                let n = &c.nodes[*i];
                indent(out);
                out.extend_from_slice(&e.name);
                out.extend_from_slice(b" [");
                if let Some(r) = &n.reason {
                    out.extend_from_slice(reason_text(r).as_bytes());
                }
                out.extend_from_slice(b"] ");
                out.extend_from_slice(&n.path);
                cuda_mark(&e.name, out);
                print_children(c, by_from, *i, depth + 1, all, out);
            }
            Target::Repeat(i) if all => {
                indent(out);
                out.extend_from_slice(&e.name);
                out.extend_from_slice(b" (already loaded: ");
                out.extend_from_slice(&c.nodes[*i].path);
                out.push(b')');
                cuda_mark(&e.name, out);
            }
            Target::Repeat(_) => {}
            Target::Rejected { path, rejection, reason } => {
                indent(out);
                out.extend_from_slice(&e.name);
                let _ = write!(out, " [{}] ", reason_text(reason));
                out.extend_from_slice(path);
                let _ = write!(out, " REFUSED by the loader: {}", rejection.message);
                cuda_mark(&e.name, out);
            }
            Target::Missing { tried } => {
                indent(out);
                out.extend_from_slice(&e.name);
                out.extend_from_slice(b" NOT FOUND");
                cuda_mark(&e.name, out);
                for t in tried.iter().take(12) {
                    indent(out);
                    out.extend_from_slice(b"    tried ");
                    out.extend_from_slice(t);
                    out.push(b'\n');
                }
                if tried.len() > 12 {
                    indent(out);
                    let _ = writeln!(out, "    … and {} more", tried.len() - 12);
                }
            }
        }
    }
}

#[derive(Serialize)]
struct JsonClosure {
    file: String,
    /// `null` when the file has no DT_NEEDED (nothing is loaded for it).
    interpreter: Option<String>,
    libraries: Vec<JsonEntry>,
    /// `--root`: the image or sysroot the paths are inside.
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    /// `--check`: what ldd -r reports, each explained.
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<JsonProblem>>,
}

#[derive(Serialize)]
struct JsonProblem {
    #[serde(flatten)]
    problem: Problem,
    explanation: Explanation,
}

#[derive(Serialize)]
struct JsonEntry {
    name: String,
    requested_by: String,
    /// `null` when not found.
    path: Option<String>,
    found_by: Option<Reason>,
    repeat: bool,
    cuda: bool,
    family: Option<&'static str>,
    tried: Vec<String>,
    /// The loader's refusal of the file the search reached (the load ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<JsonRefusal>,
}

#[derive(Serialize)]
struct JsonRefusal {
    path: String,
    error: String,
}

fn json(c: &Closure, problems: Option<&[(Problem, Explanation)]>) -> JsonClosure {
    let libraries = c
        .edges
        .iter()
        .map(|e| {
            let mut refused = None;
            let (path, found_by, repeat, tried) = match &e.to {
                Target::New(i) => (Some(s(&c.nodes[*i].path)), c.nodes[*i].reason.clone(), false, vec![]),
                Target::Repeat(i) => (Some(s(&c.nodes[*i].path)), None, true, vec![]),
                Target::Missing { tried } => (None, None, false, tried.iter().map(|t| s(t)).collect()),
                Target::Rejected { path, rejection, reason } => {
                    refused = Some(JsonRefusal { path: s(path), error: rejection.message.clone() });
                    (None, Some(reason.clone()), false, vec![])
                }
            };
            JsonEntry {
                name: s(&e.name),
                requested_by: s(&c.nodes[e.from].path),
                path,
                found_by,
                repeat,
                cuda: catalogue::family(&e.name).is_some(),
                family: catalogue::family(&e.name),
                tried,
                refused,
            }
        })
        .collect();
    JsonClosure {
        file: s(c.nodes[ROOT].path.as_slice()),
        interpreter: (!c.without_needed()).then(|| s(&c.nodes[INTERP].path)),
        libraries,
        root: c.root.as_ref().map(|r| r.display().to_string()),
        problems: problems.map(|p| {
            p.iter().map(|(problem, e)| JsonProblem { problem: problem.clone(), explanation: e.clone() }).collect()
        }),
    }
}
