//! The dependency closure of one file, breadth-first as the loader maps it
//! (elf/dl-deps.c): each object's DT_NEEDED in order; a name that matches an
//! object already mapped (its path, a name it was loaded as, or its SONAME)
//! is that object; a search that finds a file already mapped (same inode) is
//! that object too.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cache::Cache;
use super::object::{read_header, ElfHeader};
use super::platform::Platform;
use super::search::{Outcome, Reason, Requester, Resolver};

/// The loader every x86-64 program gets when it names none (ldd's choice too).
const DEFAULT_INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2";

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
}

pub struct Closure {
    /// In load order: the root first, the program interpreter second.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

pub const ROOT: usize = 0;
pub const INTERP: usize = 1;

/// Resolves the closure of `file` in the current environment (its
/// LD_LIBRARY_PATH, this machine's loader, cache and CPU).
pub fn closure(file: &Path) -> io::Result<Closure> {
    let header = read_header(file)?.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an ELF file"))?;
    if header.dynamic_info.needed.is_empty() && !header.dynamic {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a dynamic executable or shared object"));
    }
    let platform = Platform::of_this_machine();
    let cache = Cache::read(Path::new("/etc/ld.so.cache"));
    let llp = std::env::var_os("LD_LIBRARY_PATH").map(|v| v.as_bytes().to_vec());
    let mut resolver = Resolver::new(platform, cache, llp, (header.is_64, header.machine));

    let root_path = file.as_os_str().as_bytes().to_vec();
    let absolute = std::path::absolute(file)?;
    // The loader is mapped first and answers to its SONAME: the program's
    // PT_INTERP when that is a loader of its class, else this machine's.
    // (Its header is read, never run.)
    let (interp, interp_header) = [header.interp.clone(), Some(DEFAULT_INTERP.to_vec())]
        .into_iter()
        .flatten()
        .find_map(|i| {
            let h = read_header(Path::new(OsStr::from_bytes(&i))).ok()??;
            ((h.is_64, h.machine) == (header.is_64, header.machine)).then_some((i, h))
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no program interpreter of this class"))?;
    let mut nodes = vec![node(root_path, origin_of(absolute.as_os_str().as_bytes()), header, None, None, 0)];
    nodes.push(node(interp.clone(), origin_of(&interp), interp_header, None, None, 0));

    let mut edges = Vec::new();
    let mut next = 0;
    while next < nodes.len() {
        let from = next;
        next += 1;
        if from == INTERP {
            continue;
        }
        for name in nodes[from].header.dynamic_info.needed.clone() {
            if let Some(i) = nodes.iter().position(|n| n.path == name || n.names.contains(&name)) {
                edges.push(Edge { from, name, to: Target::Repeat(i) });
                continue;
            }
            let chain = chain_of(&nodes, from);
            let requesters: Vec<Requester<'_>> = chain
                .iter()
                .map(|&i| Requester { origin: &nodes[i].origin, path: &nodes[i].path, header: &nodes[i].header })
                .collect();
            match resolver.find(&name, &requesters) {
                Outcome::Found { path, header, reason } => {
                    if let Some(i) = nodes.iter().position(|n| n.header.file_id == header.file_id) {
                        nodes[i].names.push(name.clone());
                        edges.push(Edge { from, name, to: Target::Repeat(i) });
                        continue;
                    }
                    let origin = origin_of(&absolute_bytes(&path));
                    let depth = nodes[from].depth + 1;
                    let mut n = node(path, origin, header, Some(from), Some(reason), depth);
                    n.names.insert(0, name.clone());
                    edges.push(Edge { from, name, to: Target::New(nodes.len()) });
                    nodes.push(n);
                }
                Outcome::Missing { tried } => edges.push(Edge { from, name, to: Target::Missing { tried } }),
            }
        }
    }
    Ok(Closure { nodes, edges })
}

/// Answers "what was this object shipped to load?" for many objects, with one
/// resolver (the loader's answers read once) and each file's headers read once.
pub struct ShippedWith {
    resolver: Resolver,
    headers: std::collections::HashMap<Vec<u8>, Option<ElfHeader>>,
}

impl ShippedWith {
    pub fn new() -> ShippedWith {
        let want = (cfg!(target_pointer_width = "64"), super::object::native_machine());
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
        self.resolver.in_own_path(name, &Requester { origin: &origin, path, header: &header })
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

fn absolute_bytes(path: &[u8]) -> Vec<u8> {
    std::path::absolute(Path::new(OsStr::from_bytes(path)))
        .map(|p| p.into_os_string().into_vec())
        .unwrap_or_else(|_| path.to_vec())
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
