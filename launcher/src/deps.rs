//! `culaunch deps`: the closure as a tree (with the rule that found each
//! library), as ldd's lines, or as JSON. Output on stdout: it is what was
//! asked for.

use std::fmt::Write;

use culaunch_protocol::catalogue;
use serde::Serialize;

use crate::cli::DepsArgs;
use crate::elf::{self, Closure, Reason, Target, INTERP, ROOT};
use crate::error::Error;

pub fn command(args: DepsArgs) -> Result<(), Error> {
    let closure = elf::closure(&args.file).map_err(|source| Error::Deps { path: args.file.clone(), source })?;
    let out = if args.json {
        serde_json::to_string_pretty(&json(&closure)).unwrap_or_default() + "\n"
    } else if args.ldd {
        ldd(&closure)
    } else {
        tree(&closure, args.all)
    };
    out!("{out}");
    Ok(())
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// ldd's lines: every library in load order, `NAME => PATH`, missing ones as
/// `NAME => not found`, the program interpreter last. A library requested by
/// path is shown by its path alone, as ldd does when name and path agree.
fn ldd(c: &Closure) -> String {
    let mut out = String::new();
    for e in &c.edges {
        match &e.to {
            Target::New(i) if e.name.contains(&b'/') => {
                let _ = writeln!(out, "\t{}", s(&c.nodes[*i].path));
            }
            Target::New(i) => {
                let _ = writeln!(out, "\t{} => {}", s(&e.name), s(&c.nodes[*i].path));
            }
            Target::Missing { .. } => {
                let _ = writeln!(out, "\t{} => not found", s(&e.name));
            }
            Target::Repeat(_) => {}
        }
    }
    let _ = writeln!(out, "\t{}", s(&c.nodes[INTERP].path));
    out
}

fn reason_text(r: &Reason) -> String {
    match r {
        Reason::Direct => "direct".into(),
        Reason::Rpath { of } => format!("rpath of {}", of.rsplit('/').next().unwrap_or(of)),
        Reason::LdLibraryPath => "ld_library_path".into(),
        Reason::Runpath => "runpath".into(),
        Reason::LdSoCache => "ld.so.cache".into(),
        Reason::Default => "default".into(),
    }
}

fn cuda_mark(name: &[u8]) -> String {
    catalogue::family(name).map(|f| format!("  [CUDA {f}]")).unwrap_or_default()
}

/// The tree, libtree-style: each library under the object that first asked
/// for it, with the rule that found it.
fn tree(c: &Closure, all: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", s(&c.nodes[ROOT].path));
    print_children(c, ROOT, 1, all, &mut out);
    out
}

fn print_children(c: &Closure, from: usize, depth: usize, all: bool, out: &mut String) {
    let indent = "    ".repeat(depth);
    for e in c.edges.iter().filter(|e| e.from == from) {
        match &e.to {
            Target::New(i) => {
                let n = &c.nodes[*i];
                let why = n.reason.as_ref().map(reason_text).unwrap_or_default();
                let _ = writeln!(out, "{indent}{} [{why}] {}{}", s(&e.name), s(&n.path), cuda_mark(&e.name));
                print_children(c, *i, depth + 1, all, out);
            }
            Target::Repeat(i) if all => {
                let _ = writeln!(
                    out,
                    "{indent}{} (already loaded: {}){}",
                    s(&e.name),
                    s(&c.nodes[*i].path),
                    cuda_mark(&e.name)
                );
            }
            Target::Repeat(_) => {}
            Target::Missing { tried } => {
                let _ = writeln!(out, "{indent}{} NOT FOUND{}", s(&e.name), cuda_mark(&e.name));
                for t in tried.iter().take(12) {
                    let _ = writeln!(out, "{indent}    tried {}", s(t));
                }
                if tried.len() > 12 {
                    let _ = writeln!(out, "{indent}    … and {} more", tried.len() - 12);
                }
            }
        }
    }
}

#[derive(Serialize)]
struct JsonClosure {
    file: String,
    interpreter: String,
    libraries: Vec<JsonEntry>,
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
}

fn json(c: &Closure) -> JsonClosure {
    let libraries = c
        .edges
        .iter()
        .map(|e| {
            let (path, found_by, repeat, tried) = match &e.to {
                Target::New(i) => (Some(s(&c.nodes[*i].path)), c.nodes[*i].reason.clone(), false, vec![]),
                Target::Repeat(i) => (Some(s(&c.nodes[*i].path)), None, true, vec![]),
                Target::Missing { tried } => (None, None, false, tried.iter().map(|t| s(t)).collect()),
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
            }
        })
        .collect();
    JsonClosure { file: s(c.nodes[ROOT].path.as_slice()), interpreter: s(&c.nodes[INTERP].path), libraries }
}
