//! The objects this process has reported and still has mapped: enough to see
//! a second copy of a CUDA library arrive, and to list what a forked child
//! inherits. A fixed table, so that no allocation happens under the loader lock.

/// More than the shared objects of a large PyTorch process (about 400).
const CAP: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// The link map, as an address: the loader's handle for the object.
    pub map: usize,
    /// Identity of the mapped file.
    pub dev: u64,
    pub ino: u64,
    /// Hash of the library's stem for CUDA-family objects, else `None`.
    pub cuda_stem: Option<u64>,
    /// An address in the object's mapping (its dynamic section): whether it
    /// is still mapped, asked in a forked child.
    pub dynamic: usize,
    /// `la_objclose` came and the loader has not finished the close
    /// (`LA_ACT_CONSISTENT`): the object may still be mapped, and a child
    /// forked now keeps it mapped for good (no thread of its finishes it).
    pub closing: bool,
}

pub struct Objects {
    entries: [Entry; CAP],
    len: usize,
}

impl Objects {
    pub const fn new() -> Objects {
        const EMPTY: Entry = Entry { map: 0, dev: 0, ino: 0, cuda_stem: None, dynamic: 0, closing: false };
        Objects { entries: [EMPTY; CAP], len: 0 }
    }

    /// Records `e`; false when the table is full (the object is then reported
    /// but not checked for conflicts).
    pub fn add(&mut self, e: Entry) -> bool {
        match self.entries.get_mut(self.len) {
            Some(slot) => {
                *slot = e;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// `map` is being closed; whether it was in the table (reported). It
    /// stays, marked, until the close ends ([`Objects::forget_closed`]).
    pub fn closing(&mut self, map: usize) -> bool {
        let Some(e) = self.entries[..self.len].iter_mut().find(|e| e.map == map && !e.closing) else { return false };
        e.closing = true;
        true
    }

    /// The loader finished closing (or opening): what was being closed is
    /// gone.
    pub fn forget_closed(&mut self) {
        let mut kept = 0;
        for i in 0..self.len {
            if !self.entries[i].closing {
                self.entries[kept] = self.entries[i];
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// In a forked child: an object that was being closed is this
    /// process's for good where `still_mapped` says so, else it is gone.
    pub fn settle_after_fork(&mut self, still_mapped: impl Fn(&Entry) -> bool) {
        for e in &mut self.entries[..self.len] {
            if e.closing && still_mapped(e) {
                e.closing = false;
            }
        }
        self.forget_closed();
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries[..self.len].iter()
    }

    /// Another file of the same CUDA library already mapped (the trace schema: two
    /// different files of one family in one process).
    pub fn conflicting(&self, new: &Entry) -> Option<&Entry> {
        let stem = new.cuda_stem?;
        self.iter().find(|e| !e.closing && e.cuda_stem == Some(stem) && (e.dev, e.ino) != (new.dev, new.ino))
    }
}

/// FNV-1a: a stable hash for a stem, without allocation.
pub fn stem_hash(stem: &[u8]) -> u64 {
    stem.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuda(map: usize, ino: u64, stem: &[u8]) -> Entry {
        Entry { map, dev: 1, ino, cuda_stem: Some(stem_hash(stem)), dynamic: map, closing: false }
    }

    #[test]
    fn a_second_file_of_one_library_conflicts_the_same_file_does_not() {
        let mut o = Objects::new();
        o.add(cuda(1, 10, b"libcudart"));
        o.add(cuda(2, 20, b"libcublas"));
        assert_eq!(o.conflicting(&cuda(3, 11, b"libcudart")).map(|e| e.map), Some(1));
        assert_eq!(o.conflicting(&cuda(3, 10, b"libcudart")), None);
        assert_eq!(o.conflicting(&cuda(3, 30, b"libcublasLt")), None);
        let plain = Entry { cuda_stem: None, ..cuda(4, 11, b"") };
        assert_eq!(o.conflicting(&plain), None);
    }

    #[test]
    fn closed_objects_no_longer_conflict() {
        let mut o = Objects::new();
        o.add(cuda(1, 10, b"libcudart"));
        o.add(cuda(2, 20, b"libcublas"));
        assert!(o.closing(1));
        assert!(!o.closing(1), "once");
        // Being closed: no conflict with a new copy, though still listed.
        assert_eq!(o.conflicting(&cuda(3, 11, b"libcudart")), None);
        assert_eq!(o.iter().count(), 2);
        o.forget_closed();
        assert_eq!(o.iter().map(|e| e.map).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_fork_child_keeps_what_was_being_closed_only_while_it_is_mapped() {
        let mut o = Objects::new();
        for m in 1..=3 {
            o.add(cuda(m, 10 * m as u64, b"x"));
        }
        o.closing(1);
        o.closing(2);
        o.settle_after_fork(|e| e.map == 1);
        assert_eq!(o.iter().map(|e| (e.map, e.closing)).collect::<Vec<_>>(), vec![(1, false), (3, false)]);
    }

    #[test]
    fn a_full_table_refuses_without_panicking() {
        let mut o = Objects::new();
        for i in 0..CAP {
            assert!(o.add(cuda(i + 1, i as u64, b"x")));
        }
        assert!(!o.add(cuda(CAP + 1, 0, b"x")));
    }
}
