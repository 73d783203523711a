//! Where the loader finds a library, emulated (glibc 2.36, elf/dl-load.c
//! `_dl_map_object`): a name with a slash is opened as is; otherwise the
//! search runs DT_RPATH of the requester and of its loaders up to the main
//! program (only while the requester has no DT_RUNPATH), LD_LIBRARY_PATH,
//! the requester's DT_RUNPATH, /etc/ld.so.cache, then the default
//! directories (those two skipped under DF_1_NODEFLIB). Every directory is
//! tried with its glibc-hwcaps and legacy subdirectories first, and a
//! candidate of another class or machine is passed over.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use serde::Serialize;

use super::cache::Cache;
use super::object::{open_verify, ElfHeader, Rejection, Verdict, Want};
use super::platform::Platform;
use super::{FastMap, FastSet};

/// Which rule found a library (the tree's "why").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The request was a path.
    Direct,
    /// DT_RPATH of `of` (the requester or one of its loaders).
    Rpath {
        of: String,
    },
    LdLibraryPath,
    Runpath,
    #[serde(rename = "ld.so.cache")]
    LdSoCache,
    Default,
}

/// What the resolver needs to know about an object already in the closure.
pub struct Requester<'a> {
    /// The object's place in the closure: its expanded search lists are
    /// kept under it (glibc's `l_rpath_dirs`, `l_runpath_dirs`). `None`: not
    /// kept.
    pub id: Option<usize>,
    /// Directory of the object as the loader named it (`$ORIGIN`).
    pub origin: &'a [u8],
    pub path: &'a [u8],
    pub header: &'a ElfHeader,
}

pub enum Outcome {
    Found {
        path: Vec<u8>,
        header: ElfHeader,
        reason: Reason,
    },
    /// `tried` holds at most [`MAX_TRIED`] paths.
    Missing {
        tried: Vec<Vec<u8>>,
    },
    /// A candidate the loader refuses with an error that ends the load.
    Rejected {
        path: Vec<u8>,
        rejection: Rejection,
        reason: Reason,
    },
}

/// How many tried paths a missing library keeps: a 5000-entry RPATH must
/// not make a missing name cost 5000 strings of output and memory.
pub const MAX_TRIED: usize = 256;

/// A search list past this many directories is answered from the
/// directories' listings, read once, instead of one open(2) per directory
/// per name: deps stays linear in RPATH length times DT_NEEDED count.
const INDEX_FROM: usize = 48;

/// The target's loader context: its environment, not the launcher's.
pub struct Resolver {
    platform: Platform,
    cache: Option<Cache>,
    ld_library_path: Option<Vec<u8>>,
    /// The class, machine and byte order of the program; others are
    /// passed over.
    want: Want,
    /// Re-rooting of every path the loader would open (`deps --root`).
    root: Option<Vec<u8>>,
    dir_exists: FastMap<Vec<u8>, bool>,
    /// Directories listed so far (search-list directories, at expansion).
    listings: FastMap<Vec<u8>, Listed>,
    /// Search lists already expanded, by (object, list kind).
    lists: FastMap<(usize, u8), Rc<SearchList>>,
    /// The same lists by their text and `$ORIGIN`: objects of one package
    /// share their RPATH, and its expansion does not depend on who asks.
    lists_by_text: FastMap<Vec<u8>, Rc<SearchList>>,
    llp: Option<Rc<SearchList>>,
    defaults: Option<Rc<SearchList>>,
}

/// Short lists (from this many directories) are indexed from their second
/// search on, when their directories hold at most `INDEX_SHORT_MAX` entries.
const INDEX_SHORT_FROM: usize = 3;
const INDEX_SHORT_MAX: usize = 512;

/// A search-list directory is listed when its list is expanded, if it
/// holds at most this many names: the listing says which of the loader's
/// subdirectories exist (five stats a directory before) and which names it
/// holds (an open(2) per name a directory before). A larger one (a system
/// directory in LD_LIBRARY_PATH) costs one getdents64 to find so.
const LISTING_MAX: usize = 512;

/// What listing a directory gave.
#[derive(Clone)]
enum Listed {
    /// Its names, hashed and sorted, each with whether it may be a directory.
    Names(Rc<[(u64, bool)]>),
    /// More than [`LISTING_MAX`] names.
    TooMany,
    /// It could not be opened or read.
    Unlisted,
}

impl Listed {
    /// Whether `name` may be in the directory: `Some(false)` is exact (not
    /// there, or not a directory when `dir` is asked); `None`: not listed.
    fn may_hold(&self, name: &[u8], dir: bool) -> Option<bool> {
        let Listed::Names(names) = self else { return None };
        let h = name_hash(name);
        let from = names.partition_point(|&(x, _)| x < h);
        Some(names[from..].iter().take_while(|&&(x, _)| x == h).any(|&(_, d)| d || !dir))
    }
}

/// Which directories of a list hold a name, from their listings: (hash of
/// the name, position of the directory), sorted; and the positions of the
/// directories that could not be listed. One allocation for all the names
/// (a map of owned names cost three allocations per entry). Two names of
/// one hash only cost an open(2) that finds nothing: every candidate is
/// still opened.
struct DirIndex {
    by_hash: Vec<(u64, u32)>,
    unlisted: Vec<u32>,
}

impl DirIndex {
    /// Positions, ascending, of the directories that may hold `name`.
    fn listed(&self, name: &[u8]) -> impl Iterator<Item = u32> + '_ {
        let h = name_hash(name);
        let from = self.by_hash.partition_point(|&(x, _)| x < h);
        self.by_hash[from..].iter().take_while(move |&&(x, _)| x == h).map(|&(_, at)| at)
    }
}

fn name_hash(name: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = super::FxHasher::default();
    h.write(name);
    h.finish()
}

/// An expanded search list: every directory with its subdirectories, in
/// the order the loader tries them, those that do not exist left out.
struct SearchList {
    dirs: Vec<Vec<u8>>,
    /// Per directory: it is an entry of the list itself, not one of its
    /// subdirectories (the loader tries those first, the entry last).
    entry: Vec<bool>,
    /// For long lists: name -> positions of the directories that hold it,
    /// and the positions of directories that could not be listed. `None`:
    /// a short list too large to index.
    index: OnceCell<Option<DirIndex>>,
    /// How many searches used it.
    uses: std::cell::Cell<u32>,
    /// Every directory was listed at expansion: the index costs no system
    /// call, so even the first search uses it.
    listed: bool,
}

enum InDirs {
    Found(Vec<u8>, ElfHeader),
    Rejected(Vec<u8>, Rejection),
    None,
}

const RPATH: u8 = 0;
const RUNPATH: u8 = 1;

impl Resolver {
    pub fn new(platform: Platform, cache: Option<Cache>, ld_library_path: Option<Vec<u8>>, want: Want) -> Resolver {
        Resolver {
            platform,
            cache,
            ld_library_path,
            want,
            root: None,
            dir_exists: FastMap::default(),
            listings: FastMap::default(),
            lists: FastMap::default(),
            lists_by_text: FastMap::default(),
            llp: None,
            defaults: None,
        }
    }

    /// Every path is looked up under `root` (an image or sysroot), as seen
    /// from inside it.
    pub fn with_root(mut self, root: Option<Vec<u8>>) -> Resolver {
        self.root = root;
        self
    }

    /// Finds `name` for `chain[0]`, whose loaders are `chain[1..]` (the last
    /// is the main program).
    pub fn find(&mut self, name: &[u8], chain: &[Requester<'_>]) -> Outcome {
        let Some(requester) = chain.first() else { return Outcome::Missing { tried: Vec::new() } };
        let main = chain.last().unwrap_or(requester);
        let mut tried = Tried::default();
        if name.contains(&b'/') {
            let path = self.expand(name, requester.origin);
            return match self.check(&path) {
                Verdict::Take(header) => Outcome::Found { path, header, reason: Reason::Direct },
                Verdict::Skip | Verdict::GiveUp => Outcome::Missing { tried: vec![path] },
                Verdict::Reject(rejection) => Outcome::Rejected { path, rejection, reason: Reason::Direct },
            };
        }
        let info = &requester.header.dynamic_info;
        if info.runpath.is_none() {
            for l in chain {
                if let Some(rpath) = &l.header.dynamic_info.rpath {
                    let list = self.list(l.id.map(|i| (i, RPATH)), rpath, b":", l.origin);
                    let of = || String::from_utf8_lossy(l.path).into_owned();
                    match self.in_list(name, &list, &mut tried) {
                        InDirs::Found(path, header) => {
                            return Outcome::Found { path, header, reason: Reason::Rpath { of: of() } }
                        }
                        InDirs::Rejected(path, rejection) => {
                            return Outcome::Rejected { path, rejection, reason: Reason::Rpath { of: of() } }
                        }
                        InDirs::None => {}
                    }
                }
            }
        }
        // An empty LD_LIBRARY_PATH is no list at all (`_dl_init_paths`).
        if self.ld_library_path.as_ref().is_some_and(|l| !l.is_empty()) {
            let list = match &self.llp {
                Some(l) => l.clone(),
                None => {
                    let llp = self.ld_library_path.clone().unwrap_or_default();
                    let l = self.list(None, &llp, b":;", main.origin);
                    self.llp = Some(l.clone());
                    l
                }
            };
            match self.in_list(name, &list, &mut tried) {
                InDirs::Found(path, header) => return Outcome::Found { path, header, reason: Reason::LdLibraryPath },
                InDirs::Rejected(path, rejection) => {
                    return Outcome::Rejected { path, rejection, reason: Reason::LdLibraryPath }
                }
                InDirs::None => {}
            }
        }
        if let Some(runpath) = &info.runpath {
            let list = self.list(requester.id.map(|i| (i, RUNPATH)), runpath, b":", requester.origin);
            match self.in_list(name, &list, &mut tried) {
                InDirs::Found(path, header) => return Outcome::Found { path, header, reason: Reason::Runpath },
                InDirs::Rejected(path, rejection) => {
                    return Outcome::Rejected { path, rejection, reason: Reason::Runpath }
                }
                InDirs::None => {}
            }
        }
        let cached = self.cache.as_ref().and_then(|c| c.lookup(name, &self.platform.hwcaps)).map(<[u8]>::to_vec);
        if let Some(path) = cached {
            // DF_1_NODEFLIB still takes cache entries outside the default
            // directories (elf/dl-load.c, `_dl_is_system_library`).
            let dir = &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
            if !info.nodeflib || !self.platform.system_dirs.iter().any(|d| d == dir) {
                match self.check(&path) {
                    Verdict::Take(header) => return Outcome::Found { path, header, reason: Reason::LdSoCache },
                    Verdict::Reject(rejection) => {
                        return Outcome::Rejected { path, rejection, reason: Reason::LdSoCache }
                    }
                    Verdict::Skip | Verdict::GiveUp => tried.push(path),
                }
            }
        }
        if !info.nodeflib {
            let list = match &self.defaults {
                Some(l) => l.clone(),
                None => {
                    let dirs: Vec<Vec<u8>> = self.platform.system_dirs.iter().map(|d| with_slash(d)).collect();
                    // Not listed: the system directories are large, and
                    // ld.so.cache answers for them first.
                    let l = Rc::new(self.expand_subdirs(dirs, false));
                    self.defaults = Some(l.clone());
                    l
                }
            };
            match self.in_list(name, &list, &mut tried) {
                InDirs::Found(path, header) => return Outcome::Found { path, header, reason: Reason::Default },
                InDirs::Rejected(path, rejection) => {
                    return Outcome::Rejected { path, rejection, reason: Reason::Default }
                }
                InDirs::None => {}
            }
        }
        Outcome::Missing { tried: tried.into_paths(name) }
    }

    /// Where the requester's own DT_RPATH (or DT_RUNPATH) alone would find
    /// `name`: what the requester was shipped to load.
    pub fn in_own_path(&mut self, name: &[u8], requester: &Requester<'_>) -> Option<(Vec<u8>, Reason)> {
        let info = &requester.header.dynamic_info;
        let (list, kind, reason) = match (&info.runpath, &info.rpath) {
            (Some(r), _) => (r, RUNPATH, Reason::Runpath),
            (None, Some(r)) => (r, RPATH, Reason::Rpath { of: String::from_utf8_lossy(requester.path).into_owned() }),
            (None, None) => return None,
        };
        let list = self.list(requester.id.map(|i| (i, kind)), list, b":", requester.origin);
        match self.in_list(name, &list, &mut Tried::default()) {
            InDirs::Found(path, _) => Some((path, reason)),
            _ => None,
        }
    }

    /// Every directory of `list` (expanded) with its subdirectories, kept
    /// under `key` when given.
    fn list(&mut self, key: Option<(usize, u8)>, list: &[u8], separators: &[u8], origin: &[u8]) -> Rc<SearchList> {
        if let Some(l) = key.and_then(|k| self.lists.get(&k)) {
            return l.clone();
        }
        // NUL ends each part: no path or list holds one.
        let text = [list, b"\0", separators, b"\0", origin].concat();
        let l = match self.lists_by_text.get(&text) {
            Some(l) => l.clone(),
            None => {
                let dirs = self.dirs(list, separators, origin);
                let l = Rc::new(self.expand_subdirs(dirs, true));
                self.lists_by_text.insert(text, l.clone());
                l
            }
        };
        if let Some(k) = key {
            self.lists.insert(k, l.clone());
        }
        l
    }

    /// `list`: list each directory first (see [`LISTING_MAX`]).
    fn expand_subdirs(&mut self, dirs: Vec<Vec<u8>>, list: bool) -> SearchList {
        let subdirs = std::mem::take(&mut self.platform.subdirs);
        let mut out = Vec::new();
        let mut entry = Vec::new();
        let mut d = Vec::new();
        for dir in dirs {
            if list {
                self.listing(&dir, Some(LISTING_MAX));
            }
            // A directory that does not exist has no subdirectories: one
            // stat, not one per subdirectory.
            if !self.exists(&dir) {
                continue;
            }
            for sub in &subdirs {
                if sub.is_empty() {
                    out.push(dir.clone());
                    entry.push(true);
                    continue;
                }
                // `tls/haswell/x86_64/` can only exist below an existing
                // `tls/`: each prefix is asked once (and remembered), so a
                // directory without legacy subdirectories costs five stats
                // for its nineteen, not nineteen.
                d.clear();
                d.extend_from_slice(&dir);
                let mut all = true;
                for part in sub.split_inclusive(|&b| b == b'/') {
                    d.extend_from_slice(part);
                    if !self.exists(&d) {
                        all = false;
                        break;
                    }
                }
                if all {
                    out.push(d.clone());
                    entry.push(false);
                }
            }
        }
        self.platform.subdirs = subdirs;
        let listed = list && out.iter().all(|d| matches!(self.listings.get(d), Some(Listed::Names(_))));
        SearchList { dirs: out, entry, index: OnceCell::new(), uses: std::cell::Cell::new(0), listed }
    }

    /// A search list split and expanded like `fillin_rpath`: `$ORIGIN`,
    /// `$LIB`, `$PLATFORM` substituted, trailing slashes reduced to one, an
    /// empty entry meaning the current directory, duplicates dropped.
    fn dirs(&self, list: &[u8], separators: &[u8], origin: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut seen: FastSet<Vec<u8>> = FastSet::default();
        for entry in list.split(|b| separators.contains(b)) {
            let dir = if entry.is_empty() { Vec::new() } else { with_slash(&self.expand(entry, origin)) };
            if seen.insert(dir.clone()) {
                out.push(dir);
            }
        }
        out
    }

    /// Substitutes the dynamic string tokens in `s`.
    fn expand(&self, s: &[u8], origin: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'$' {
                if let Some((value, len)) = self.token(&s[i + 1..], origin) {
                    out.extend_from_slice(value);
                    i += 1 + len;
                    continue;
                }
            }
            out.push(s[i]);
            i += 1;
        }
        out
    }

    fn token<'a>(&'a self, rest: &[u8], origin: &'a [u8]) -> Option<(&'a [u8], usize)> {
        for (name, value) in
            [("ORIGIN", origin), ("LIB", &self.platform.lib[..]), ("PLATFORM", &self.platform.platform[..])]
        {
            let n = name.as_bytes();
            if rest.starts_with(b"{") && rest[1..].starts_with(n) && rest.get(1 + n.len()) == Some(&b'}') {
                return Some((value, n.len() + 2));
            }
            // `$ORIGIN` must not run on into an identifier (`$ORIGINAL`).
            let ends = rest.get(n.len()).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
            if rest.starts_with(n) && ends {
                return Some((value, n.len()));
            }
        }
        None
    }

    fn in_list(&mut self, name: &[u8], list: &Rc<SearchList>, tried: &mut Tried) -> InDirs {
        // A path the loader would try, and what it makes of it; `keep`:
        // name it among the tried paths (an indexed search names its whole
        // list instead). `Some(InDirs::None)`: the search of this list ends
        // here, as when a list entry's own candidate fails to open
        // otherwise than with ENOENT or EACCES (ld.so looks at the errno of
        // an entry's last try, which is the entry itself).
        let try_at = |this: &mut Self, at: usize, tried: &mut Tried, keep: bool| -> Option<InDirs> {
            let mut path = list.dirs[at].clone();
            path.extend_from_slice(name);
            match this.check(&path) {
                Verdict::Take(h) => Some(InDirs::Found(path, h)),
                Verdict::Reject(r) => Some(InDirs::Rejected(path, r)),
                verdict => {
                    if keep {
                        tried.push(path);
                    }
                    (verdict == Verdict::GiveUp && list.entry[at]).then_some(InDirs::None)
                }
            }
        };
        let uses = list.uses.get();
        list.uses.set(uses.saturating_add(1));
        // Lists whose directories were all listed at expansion, and long
        // lists, are indexed at once; other short ones from their second
        // search on (a torch library's RPATH of a dozen wheel directories
        // answers twenty names: one listing of each, not an open(2) per
        // name per directory), unless their directories are large.
        let indexed =
            list.listed || list.dirs.len() >= INDEX_FROM || (list.dirs.len() >= INDEX_SHORT_FROM && uses >= 1);
        let index = if indexed {
            let capped = !list.listed && list.dirs.len() < INDEX_FROM;
            list.index.get_or_init(|| self.index(&list.dirs, capped)).as_ref()
        } else {
            None
        };
        let Some(index) = index else {
            for at in 0..list.dirs.len() {
                if let Some(found) = try_at(self, at, tried, true) {
                    return found;
                }
            }
            return InDirs::None;
        };
        let (mut a, mut b) = (index.listed(name).peekable(), index.unlisted.iter().copied().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&x), Some(&y)) if x <= y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            let Some(at) = next else { break };
            if let Some(found) = try_at(self, at as usize, tried, false) {
                if matches!(found, InDirs::None) {
                    break;
                }
                return found;
            }
        }
        // The tried paths of an indexed list are only named if the whole
        // search fails: a found name must not cost a path per directory.
        tried.push_list(list);
        InDirs::None
    }

    /// Lists every directory once. `capped`: give up (None) past
    /// [`INDEX_SHORT_MAX`] entries, where listing costs more than the
    /// open(2) calls it saves.
    fn index(&mut self, dirs: &[Vec<u8>], capped: bool) -> Option<DirIndex> {
        let mut by_hash = Vec::new();
        let mut unlisted = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let room = capped.then(|| INDEX_SHORT_MAX.saturating_sub(by_hash.len()));
            match self.listing(dir, room) {
                Listed::Names(names) => by_hash.extend(names.iter().map(|&(h, _)| (h, i as u32))),
                Listed::TooMany => return None,
                // Searchable but not readable (mode 0711): open(2) may still
                // find a file in it.
                Listed::Unlisted => unlisted.push(i as u32),
            }
            if capped && by_hash.len() > INDEX_SHORT_MAX {
                return None;
            }
        }
        by_hash.sort_unstable();
        by_hash.dedup();
        Some(DirIndex { by_hash, unlisted })
    }

    /// The names in `dir`, listed once; `max`: stop past that many, and
    /// say so. A directory found too large is listed again when asked
    /// without a bound.
    fn listing(&mut self, dir: &[u8], max: Option<usize>) -> Listed {
        match self.listings.get(dir) {
            Some(Listed::TooMany) if max.is_none() => {}
            Some(Listed::TooMany) => return Listed::TooMany,
            Some(l) => return l.clone(),
            None => {}
        }
        let at = self.rooted(if dir.is_empty() { b"." } else { dir });
        let mut names = Vec::new();
        let listed = super::listing::each_name(&at, |name, may_be_dir| {
            names.push((name_hash(name), may_be_dir));
            max.is_none_or(|m| names.len() <= m)
        });
        let l = match listed {
            Ok(true) => {
                // Never listed, always there: a DT_NEEDED of `..` opens the
                // directory above (and the loader stops at reading it).
                names.extend([(name_hash(b"."), true), (name_hash(b".."), true)]);
                names.sort_unstable();
                names.dedup();
                Listed::Names(names.into())
            }
            Ok(false) => Listed::TooMany,
            Err(_) => Listed::Unlisted,
        };
        // Opening it as a directory answered whether it is one, unless
        // permissions or resources were in the way.
        let is_dir = match &listed {
            Ok(_) => Some(true),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Some(true),
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG) => Some(false),
                _ => None,
            },
        };
        if let Some(is) = is_dir {
            self.dir_exists.entry(dir.to_vec()).or_insert(is);
        }
        self.listings.insert(dir.to_vec(), l.clone());
        l
    }

    fn exists(&mut self, dir: &[u8]) -> bool {
        if let Some(&known) = self.dir_exists.get(dir) {
            return known;
        }
        // A name its parent's listing lacks, or holds as no directory, is
        // not there: no stat. One it holds is still asked (a link, or two
        // names of one hash).
        if let Some((parent, name)) = split_last_component(dir) {
            if self.listings.get(parent).and_then(|l| l.may_hold(name, true)) == Some(false) {
                self.dir_exists.insert(dir.to_vec(), false);
                return false;
            }
        }
        let probe = self.rooted(if dir.is_empty() { b"." } else { dir });
        let is = Path::new(OsStr::from_bytes(&probe)).is_dir();
        self.dir_exists.insert(dir.to_vec(), is);
        is
    }

    /// The path on this machine of `path` as the target sees it.
    pub fn rooted<'p>(&self, path: &'p [u8]) -> std::borrow::Cow<'p, [u8]> {
        match &self.root {
            Some(root) => super::root::resolve(root, path).into(),
            None => path.into(),
        }
    }

    /// What the loader does with `path` (a path as the target sees it).
    fn check(&self, path: &[u8]) -> Verdict {
        open_verify(Path::new(OsStr::from_bytes(&self.rooted(path))), self.want)
    }
}

/// The paths a search tried, in the loader's order; an indexed list's kept
/// whole, for naming only if the search fails.
#[derive(Default)]
struct Tried {
    items: Vec<TriedItem>,
    paths: usize,
}

enum TriedItem {
    Path(Vec<u8>),
    List(Rc<SearchList>),
}

impl Tried {
    fn push(&mut self, path: Vec<u8>) {
        if self.paths < MAX_TRIED {
            self.paths += 1;
            self.items.push(TriedItem::Path(path));
        }
    }

    fn push_list(&mut self, list: &Rc<SearchList>) {
        self.items.push(TriedItem::List(Rc::clone(list)));
    }

    fn into_paths(self, name: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for item in self.items {
            match item {
                TriedItem::Path(p) => out.push(p),
                TriedItem::List(list) => out.extend(list.dirs.iter().map(|d| [&d[..], name].concat())),
            }
            if out.len() >= MAX_TRIED {
                out.truncate(MAX_TRIED);
                break;
            }
        }
        out
    }
}

/// `/a/b/sub/` -> (`/a/b/`, `sub`); `None` for `/`, `` and a name of no
/// parent (`sub/`).
fn split_last_component(dir: &[u8]) -> Option<(&[u8], &[u8])> {
    let trimmed = dir.strip_suffix(b"/")?;
    let at = trimmed.iter().rposition(|&b| b == b'/')?;
    let name = &trimmed[at + 1..];
    (!name.is_empty() && name != b"." && name != b"..").then(|| (&dir[..=at], name))
}

fn with_slash(dir: &[u8]) -> Vec<u8> {
    let mut d = dir.to_vec();
    while d.len() > 1 && d.ends_with(b"/") {
        d.pop();
    }
    if !d.ends_with(b"/") {
        d.push(b'/');
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> Resolver {
        let platform = Platform {
            system_dirs: vec![],
            subdirs: vec![Vec::new()],
            hwcaps: vec![],
            lib: b"lib/x86_64-linux-gnu".to_vec(),
            platform: b"haswell".to_vec(),
            glibc: None,
        };
        Resolver::new(platform, None, None, Want { is_64: true, machine: 62, big_endian: false })
    }

    #[test]
    fn tokens_expand_in_both_spellings_and_only_whole() {
        let r = resolver();
        assert_eq!(r.expand(b"$ORIGIN/../lib", b"/a/b"), b"/a/b/../lib");
        assert_eq!(r.expand(b"${ORIGIN}/x/$LIB/${PLATFORM}", b"/o"), b"/o/x/lib/x86_64-linux-gnu/haswell");
        assert_eq!(r.expand(b"$ORIGINAL/$FOO", b"/o"), b"$ORIGINAL/$FOO");
    }

    #[test]
    fn search_lists_split_trim_and_dedupe_like_fillin_rpath() {
        let r = resolver();
        let dirs = r.dirs(b"$ORIGIN:/x//:/x/::/y", b":", b"/o");
        assert_eq!(dirs, vec![b"/o/".to_vec(), b"/x/".to_vec(), Vec::new(), b"/y/".to_vec()]);
        assert_eq!(r.dirs(b"/a;/b:/c", b":;", b"/o").len(), 3);
        assert_eq!(r.dirs(b"/", b":", b"/o"), vec![b"/".to_vec()]);
    }
}
