//! A `dlopen` that mapped objects and then failed, held from the teardown
//! of its batch (`tracker::Close`) until it is written: when the program
//! asks `dlerror` (glibc's own words), else at the next load, at exit.
//! Pure: the callbacks fill it, `judge` says what the event says.

use culaunch_protocol::event::{FailReason, How};

use crate::dlerror::{name_hash, Said};
use crate::paths::PATH_MAX;

/// Names of the batch's objects kept for matching `dlerror`'s text.
const NAMES: usize = 64;
/// Room for the paths of the batch's other reported objects.
const UNMAPPED: usize = 8192;

/// A byte string of at most `N` bytes, cut if longer.
pub struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
    set: bool,
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Text<N> {
        Text { bytes: [0; N], len: 0, set: false }
    }

    pub fn set(&mut self, value: Option<&[u8]>) {
        let v = value.unwrap_or(b"");
        self.len = v.len().min(N);
        self.bytes[..self.len].copy_from_slice(&v[..self.len]);
        self.set = value.is_some();
    }

    pub fn get(&self) -> Option<&[u8]> {
        self.set.then_some(&self.bytes[..self.len])
    }
}

/// What the teardown of a `dlopen`'s batch says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// Before the batch was consistent: the load failed, and the text the
    /// program gets next from `dlerror` is about it.
    BeforeConsistent,
    /// Right after, with the relocation unfinished (`relro`): the load
    /// failed; a text is about it only if it names one of its objects.
    Unrelocated,
    /// Right after, otherwise: a failure only if `dlerror`'s text names one
    /// of its objects (it may be a `dlopen` closed at once).
    Suspect,
}

pub struct Failure {
    /// A failure (or a suspect teardown) is held.
    pub held: bool,
    pub teardown: Teardown,
    /// The trace reports it: one of its objects had a `load` event, or the
    /// configuration reports every library.
    pub reported: bool,
    pub how: How,
    pub lmid: i64,
    pub dur_ns: u64,
    pub family: Option<&'static str>,
    pub request: Text<PATH_MAX>,
    pub caller: Text<PATH_MAX>,
    /// The batch's first object, canonical.
    pub path: Text<PATH_MAX>,
    pub soname: Text<256>,
    /// A DT_NEEDED of the batch for which the loader mapped nothing.
    pub dependency: Text<PATH_MAX>,
    /// …and the file it last tried does not exist.
    pub dependency_absent: bool,
    names: [u64; NAMES],
    names_len: usize,
    /// The other reported objects the teardown unmapped, NUL-separated.
    unmapped: [u8; UNMAPPED],
    unmapped_len: usize,
}

/// Where the event's `error` comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Words {
    /// The text `dlerror` returned.
    Said,
    /// glibc's words for a dependency no file answered.
    NotFound,
    None,
}

/// What the `load` event with `ok:false` says.
#[derive(Debug, PartialEq, Eq)]
pub struct Judged<'a> {
    pub reason: FailReason,
    pub error: Words,
    pub symbol: Option<&'a [u8]>,
    pub version: Option<&'a [u8]>,
    pub required_by: Option<&'a [u8]>,
}

impl Failure {
    pub const fn new() -> Failure {
        Failure {
            held: false,
            teardown: Teardown::Suspect,
            reported: false,
            how: How::Dlopen,
            lmid: 0,
            dur_ns: 0,
            family: None,
            request: Text::new(),
            caller: Text::new(),
            path: Text::new(),
            soname: Text::new(),
            dependency: Text::new(),
            dependency_absent: false,
            names: [0; NAMES],
            names_len: 0,
            unmapped: [0; UNMAPPED],
            unmapped_len: 0,
        }
    }

    /// Starts holding a teardown; the callbacks then fill the fields.
    pub fn begin(&mut self, teardown: Teardown) {
        self.held = true;
        self.teardown = teardown;
        self.reported = false;
        self.family = None;
        self.dependency.set(None);
        self.dependency_absent = false;
        self.names_len = 0;
        self.unmapped_len = 0;
    }

    pub fn clear(&mut self) {
        self.held = false;
    }

    /// An object of the batch, by the name the loader gave it (as glibc's
    /// texts name it).
    pub fn add_name(&mut self, name: &[u8]) {
        if let Some(slot) = self.names.get_mut(self.names_len) {
            *slot = name_hash(name);
            self.names_len += 1;
        }
    }

    fn names(&self, name: &[u8]) -> bool {
        let h = name_hash(name);
        self.names[..self.names_len].contains(&h)
    }

    /// Another reported object the teardown unmapped; dropped if there is no
    /// room left (the event then lists fewer).
    pub fn add_unmapped(&mut self, path: &[u8]) {
        let end = self.unmapped_len + path.len() + 1;
        if end <= UNMAPPED {
            self.unmapped[self.unmapped_len..end - 1].copy_from_slice(path);
            self.unmapped[end - 1] = 0;
            self.unmapped_len = end;
        }
    }

    pub fn unmapped(&self) -> impl Iterator<Item = &[u8]> {
        self.unmapped[..self.unmapped_len].split(|&b| b == 0).filter(|p| !p.is_empty())
    }

    /// What to write, given `dlerror`'s text when the program asked (else
    /// `None`); `None` when nothing is to be claimed. A failure before the
    /// batch was consistent takes the text the program got next, whatever
    /// object it names; otherwise a text is this load's only when it names
    /// one of its objects (a `dlclose` right after `dlopen` sets no error,
    /// and a `dlsym` error names an object that is still mapped), and a
    /// suspect teardown is no failure without one.
    pub fn judge<'s>(&self, said: Option<&Said<'s>>) -> Option<Judged<'s>> {
        if !self.held {
            return None;
        }
        let any_text = self.teardown == Teardown::BeforeConsistent;
        match said {
            Some(s) if any_text || self.names(s.object) || s.required_by.is_some_and(|r| self.names(r)) => {
                let reason = match s.reason {
                    // The first object was mapped: what was not found is
                    // one of its dependencies.
                    FailReason::NotFound => FailReason::MissingDependency,
                    r => r,
                };
                Some(Judged {
                    reason,
                    error: Words::Said,
                    symbol: s.symbol,
                    version: s.version,
                    required_by: s.required_by,
                })
            }
            Some(_) => None,
            None if self.teardown != Teardown::Suspect => {
                let (reason, error) = match (self.dependency.get(), self.dependency_absent) {
                    (Some(_), true) => (FailReason::MissingDependency, Words::NotFound),
                    (Some(_), false) => (FailReason::MissingDependency, Words::None),
                    (None, _) => (FailReason::Failed, Words::None),
                };
                Some(Judged { reason, error, symbol: None, version: None, required_by: None })
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlerror::parse;

    fn held(teardown: Teardown) -> Failure {
        let mut f = Failure::new();
        f.begin(teardown);
        f.add_name(b"/w/libcudnn_cnn_infer.so.8");
        f.add_name(b"old/libcudnn_ops_infer.so.8");
        f
    }

    #[test]
    fn a_suspect_teardown_is_a_failure_only_when_dlerror_names_its_objects() {
        let f = held(Teardown::Suspect);
        let t = parse(
            b"/w/libcudnn_cnn_infer.so.8: undefined symbol: _ZN11nvrtcHelper4loadEb, version libcudnn_ops_infer.so.8",
        );
        let j = f.judge(Some(&t)).map(|j| (j.reason, j.error, j.symbol));
        assert_eq!(j, Some((FailReason::UndefinedSymbol, Words::Said, Some(&b"_ZN11nvrtcHelper4loadEb"[..]))));
        // dlopen then dlclose: no text, no failure; another object's dlsym
        // error is not this load's.
        assert_eq!(f.judge(None), None);
        assert_eq!(f.judge(Some(&parse(b"/lib/libm.so.6: undefined symbol: nope"))), None);
    }

    #[test]
    fn a_certain_failure_takes_the_text_else_says_what_it_knows() {
        let mut f = held(Teardown::BeforeConsistent);
        let t = parse(b"/lib/libc.so.6: version `GLIBC_9' not found (required by /w/libcudnn_cnn_infer.so.8)");
        let j = f.judge(Some(&t)).map(|j| (j.reason, j.version, j.required_by));
        assert_eq!(
            j,
            Some((FailReason::MissingVersion, Some(&b"GLIBC_9"[..]), Some(&b"/w/libcudnn_cnn_infer.so.8"[..])))
        );
        let t = parse(b"libabsent.so: cannot open shared object file: No such file or directory");
        assert_eq!(f.judge(Some(&t)).map(|j| j.reason), Some(FailReason::MissingDependency));
        assert_eq!(f.judge(None).map(|j| (j.reason, j.error)), Some((FailReason::Failed, Words::None)));
        f.dependency.set(Some(b"libabsent.so"));
        f.dependency_absent = true;
        assert_eq!(f.judge(None).map(|j| (j.reason, j.error)), Some((FailReason::MissingDependency, Words::NotFound)));
        f.clear();
        assert_eq!(f.judge(None), None);
    }

    #[test]
    fn an_unrelocated_teardown_is_a_failure_that_takes_only_a_text_naming_it() {
        let f = held(Teardown::Unrelocated);
        assert_eq!(f.judge(None).map(|j| (j.reason, j.error)), Some((FailReason::Failed, Words::None)));
        // A later dlsym error about another object is not this load's.
        assert_eq!(f.judge(Some(&parse(b"/lib/libm.so.6: undefined symbol: nope"))), None);
        let t = parse(b"old/libcudnn_ops_infer.so.8: undefined symbol: x");
        assert_eq!(
            f.judge(Some(&t)).map(|j| (j.reason, j.symbol)),
            Some((FailReason::UndefinedSymbol, Some(&b"x"[..])))
        );
    }

    #[test]
    fn unmapped_paths_are_listed_until_the_room_runs_out() {
        let mut f = held(Teardown::BeforeConsistent);
        assert_eq!(f.unmapped().count(), 0);
        f.add_unmapped(b"/a/libx.so");
        f.add_unmapped(b"/b/liby.so");
        assert_eq!(f.unmapped().collect::<Vec<_>>(), [&b"/a/libx.so"[..], b"/b/liby.so"]);
        let long = [b'x'; UNMAPPED];
        f.add_unmapped(&long);
        assert_eq!(f.unmapped().count(), 2);
        f.begin(Teardown::Suspect);
        assert_eq!(f.unmapped().count(), 0);
    }

    #[test]
    fn texts_are_cut_not_overflowed() {
        let mut t = Text::<4>::new();
        assert_eq!(t.get(), None);
        t.set(Some(b"abcdef"));
        assert_eq!(t.get(), Some(&b"abcd"[..]));
        t.set(None);
        assert_eq!(t.get(), None);
    }
}
