//! The dependency closure of one file, breadth-first as the loader maps it
//! (elf/dl-deps.c): each object's DT_NEEDED in order; a name that matches an
//! object already mapped (its path, a name it was loaded as, or its SONAME)
//! is that object; a search that finds a file already mapped (same inode) is
//! that object too.

use super::machine::default_interp;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::cache::Cache;
use super::object::{open_verify, read_header, ElfHeader, Rejection, Verdict, Want};
use super::platform::Platform;
use super::search::{Outcome, Reason, Requester, Resolver};

pub struct Node {
    /// The path as the loader names it (ldd's right-hand side).
    pub path: Vec<u8>,
    /// Names it answers to: what it was asked for as, and its SONAME.
    pub names: Vec<Vec<u8>>,
    pub header: ElfHeader,
    origin: Vec<u8>,
    /// The object that first asked for it; `None` for the root and the loader.
    pub parent: Option<usize>,
    pub reason: Option<Reason>,
    pub depth: usize,
}

/// One DT_NEEDED entry of one object.
pub struct Edge {
    pub from: usize,
    pub name: Vec<u8>,
    pub to: Target,
}

pub enum Target {
    /// Mapped by this request.
    New(usize),
    /// Already mapped by an earlier request.
    Repeat(usize),
    Missing {
        tried: Vec<Vec<u8>>,
    },
    /// The search reached a file the loader refuses, which ends the load
    /// (the program does not start; ldd prints the error and exits 1).
    Rejected {
        path: Vec<u8>,
        rejection: Rejection,
        reason: Reason,
    },
}

pub struct Closure {
    /// In load order: the root first, the program interpreter second.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Where paths were looked up: `deps --root`'s DIR.
    pub root: Option<PathBuf>,
    /// What the loader rules were decided from.
    pub platform: Platform,
}

impl Closure {
    /// The file has no DT_NEEDED: ldd says "statically linked" and lists
    /// nothing, the loader itself included.
    pub fn without_needed(&self) -> bool {
        self.nodes[ROOT].header.dynamic_info.needed.is_empty()
    }

    /// The first refusal in load order: what the loader would stop at.
    pub fn first_rejection(&self) -> Option<&Edge> {
        self.edges.iter().find(|e| matches!(e.to, Target::Rejected { .. }))
    }
}

pub const ROOT: usize = 0;
pub const INTERP: usize = 1;

/// What a closure is computed for.
#[derive(Default)]
pub struct Context {
    /// An image or sysroot: every path is looked up inside it.
    pub root: Option<PathBuf>,
    /// The target's LD_LIBRARY_PATH.
    pub ld_library_path: Option<Vec<u8>>,
    /// Give up (`TimedOut`) once this has passed: a run's pre-flight must
    /// never hold up the job's start for a pathological file.
    pub deadline: Option<std::time::Instant>,
}

impl Context {
    /// The current environment: its LD_LIBRARY_PATH, this machine's files.
    pub fn here() -> Context {
        Context {
            root: None,
            ld_library_path: std::env::var_os("LD_LIBRARY_PATH").map(|v| v.as_bytes().to_vec()),
            deadline: None,
        }
    }
}

/// Resolves the closure of `file` in the current environment (its
/// LD_LIBRARY_PATH, this machine's loader, cache and CPU).
pub fn closure(file: &Path) -> io::Result<Closure> {
    closure_in(file, &Context::here())
}

/// Resolves the closure of `file` in `ctx`. Under a root, `file` is a path
/// as seen inside it.
pub fn closure_in(file: &Path, ctx: &Context) -> io::Result<Closure> {
    let root = ctx.root.as_ref().map(|r| r.as_os_str().as_bytes().to_vec());
    let inside = |p: &[u8]| -> PathBuf {
        match &root {
            Some(r) => PathBuf::from(OsStr::from_bytes(&super::root::resolve(r, p))),
            None => PathBuf::from(OsStr::from_bytes(p)),
        }
    };
    let root_path = match &root {
        Some(r) => inside_path(r, file.as_os_str().as_bytes()),
        None => file.as_os_str().as_bytes().to_vec(),
    };
    let header = read_header(&inside(&root_path))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an ELF file"))?;
    if !header.has_dynamic {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a dynamic executable or shared object"));
    }
    let want = Want::of(&header);
    let platform = match &ctx.root {
        None if want == Want::native() => Platform::of_this_machine(),
        _ => Platform::from_rules(ctx.root.as_deref().unwrap_or(Path::new("/")), want),
    };
    let cache = Cache::read(&inside(b"/etc/ld.so.cache")).map(|c| c.for_target(want));
    let mut resolver =
        Resolver::new(platform.clone(), cache, ctx.ld_library_path.clone(), want).with_root(root.clone());

    let absolute = match &root {
        Some(_) => root_path.clone(),
        None => absolute_bytes(file.as_os_str().as_bytes()),
    };
    // The loader is mapped first and answers to its SONAME: the program's
    // PT_INTERP when that is a loader of its class, else the default one of
    // its machine. (Its header is read, never run.)
    let (interp, interp_header) = [header.interp.clone(), Some(default_interp(want).to_vec())]
        .into_iter()
        .flatten()
        .find_map(|i| match open_verify(&inside(&i), want) {
            Verdict::Take(h) => Some((i, h)),
            _ => None,
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no program interpreter of this class"))?;
    let mut nodes = vec![node(root_path, origin_of(&absolute), header, None, None, 0)];
    nodes.push(node(interp.clone(), origin_of(&interp), interp_header, None, None, 0));
    // What each name and each file already mapped is: the loader's
    // `_dl_name_match_p` over `l_name`, `l_libname` and SONAME, and its
    // inode test.
    let mut by_name: super::FastMap<Vec<u8>, usize> = super::FastMap::default();
    let mut by_file: super::FastMap<(u64, u64), usize> = super::FastMap::default();
    for (i, n) in nodes.iter().enumerate() {
        for name in &n.names {
            by_name.entry(name.clone()).or_insert(i);
        }
        by_file.entry(n.header.file_id).or_insert(i);
    }

    let mut edges = Vec::new();
    let mut next = 0;
    while next < nodes.len() {
        let from = next;
        next += 1;
        if from == INTERP {
            continue;
        }
        for name in nodes[from].header.dynamic_info.needed.clone() {
            if ctx.deadline.is_some_and(|d| std::time::Instant::now() > d) {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the closure took too long to resolve"));
            }
            if let Some(&i) = by_name.get(&name) {
                edges.push(Edge { from, name, to: Target::Repeat(i) });
                continue;
            }
            let chain = chain_of(&nodes, from);
            let requesters: Vec<Requester<'_>> = chain
                .iter()
                .map(|&i| Requester {
                    id: Some(i),
                    origin: &nodes[i].origin,
                    path: &nodes[i].path,
                    header: &nodes[i].header,
                })
                .collect();
            match resolver.find(&name, &requesters) {
                Outcome::Found { path, header, reason } => {
                    if let Some(&i) = by_file.get(&header.file_id) {
                        nodes[i].names.push(name.clone());
                        by_name.entry(name.clone()).or_insert(i);
                        edges.push(Edge { from, name, to: Target::Repeat(i) });
                        continue;
                    }
                    let origin = match &root {
                        Some(_) => origin_of(&path),
                        None => origin_of(&absolute_bytes(&path)),
                    };
                    let depth = nodes[from].depth + 1;
                    let mut n = node(path, origin, header, Some(from), Some(reason), depth);
                    n.names.insert(0, name.clone());
                    let at = nodes.len();
                    for nm in &n.names {
                        by_name.entry(nm.clone()).or_insert(at);
                    }
                    by_file.insert(n.header.file_id, at);
                    edges.push(Edge { from, name, to: Target::New(at) });
                    nodes.push(n);
                }
                Outcome::Missing { tried } => edges.push(Edge { from, name, to: Target::Missing { tried } }),
                Outcome::Rejected { path, rejection, reason } => {
                    edges.push(Edge { from, name, to: Target::Rejected { path, rejection, reason } })
                }
            }
        }
    }
    Ok(Closure { nodes, edges, root: ctx.root.clone(), platform })
}

/// `file` as a path inside `root`: a host path under it loses the prefix; a
/// relative one is taken from the root's top.
fn inside_path(root: &[u8], file: &[u8]) -> Vec<u8> {
    let root = root.strip_suffix(b"/").unwrap_or(root);
    if let Some(rest) = file.strip_prefix(root).filter(|r| r.starts_with(b"/")) {
        return rest.to_vec();
    }
    if file.starts_with(b"/") {
        file.to_vec()
    } else {
        [b"/", file].concat()
    }
}

/// Answers "what was this object shipped to load?" for many objects, with one
/// resolver (the loader's answers read once) and each file's headers read once.
pub struct ShippedWith {
    resolver: Resolver,
    headers: std::collections::HashMap<Vec<u8>, Option<ElfHeader>>,
}

impl ShippedWith {
    pub fn new() -> ShippedWith {
        let want = Want::native();
        ShippedWith {
            resolver: Resolver::new(Platform::of_this_machine(), None, None, want),
            headers: Default::default(),
        }
    }

    /// The headers of `object`, read once.
    pub fn header(&mut self, object: &Path) -> Option<&ElfHeader> {
        let key = object.as_os_str().as_bytes().to_vec();
        self.headers.entry(key).or_insert_with(|| read_header(object).ok().flatten()).as_ref()
    }

    /// Where `object`'s own DT_RPATH or DT_RUNPATH would find `name`, and
    /// which of the two it is: the copy the object was shipped with.
    pub fn own_copy(&mut self, object: &Path, name: &[u8]) -> Option<(Vec<u8>, Reason)> {
        let header = self.header(object)?.clone();
        let path = object.as_os_str().as_bytes();
        let origin = origin_of(&absolute_bytes(path));
        self.resolver.in_own_path(name, &Requester { id: None, origin: &origin, path, header: &header })
    }

    /// The search lists of `object` that hold an empty entry (`$ORIGIN:`),
    /// which the loader reads as the current directory.
    pub fn empty_search_entries(&mut self, object: &Path) -> Vec<(&'static str, String)> {
        let Some(h) = self.header(object) else { return Vec::new() };
        let info = &h.dynamic_info;
        [("DT_RPATH", &info.rpath), ("DT_RUNPATH", &info.runpath)]
            .into_iter()
            .filter_map(|(tag, list)| {
                let list = list.as_ref()?;
                list.split(|&b| b == b':')
                    .any(<[u8]>::is_empty)
                    .then(|| (tag, String::from_utf8_lossy(list).into_owned()))
            })
            .collect()
    }
}

fn node(
    path: Vec<u8>,
    origin: Vec<u8>,
    header: ElfHeader,
    parent: Option<usize>,
    reason: Option<Reason>,
    depth: usize,
) -> Node {
    let mut names = vec![path.clone()];
    names.extend(header.soname.clone());
    Node { path, names, header, origin, parent, reason, depth }
}

/// `from`, then the object that loaded it, and so on up to the root (the
/// loader's `l_loader` chain, which DT_RPATH inheritance walks).
fn chain_of(nodes: &[Node], from: usize) -> Vec<usize> {
    let mut chain = vec![from];
    let mut at = from;
    while let Some(p) = nodes[at].parent {
        chain.push(p);
        at = p;
    }
    if *chain.last().unwrap_or(&ROOT) != ROOT {
        chain.push(ROOT);
    }
    chain
}

/// `path` made absolute as `_dl_new_object` does for `l_origin`: the
/// working directory, a slash and the path, not normalised (`./lib.so` in
/// /d has the origin `/d/.`, and `$ORIGIN/x` expands to `/d/./x`).
fn absolute_bytes(path: &[u8]) -> Vec<u8> {
    if path.starts_with(b"/") {
        return path.to_vec();
    }
    match std::env::current_dir() {
        Ok(cwd) => {
            let mut out = cwd.into_os_string().into_vec();
            out.push(b'/');
            out.extend_from_slice(path);
            out
        }
        Err(_) => path.to_vec(),
    }
}

/// The directory part, as glibc computes `l_origin` (elf/dl-object.c): of
/// the absolute path as opened, symbolic links not resolved.
fn origin_of(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(i) => path[..i].to_vec(),
        None => b".".to_vec(),
    }
}

use std::os::unix::ffi::OsStringExt;
