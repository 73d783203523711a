//! ELF files, seen through the project's own types. goblin stays inside
//! `object.rs`.

pub(crate) mod cache;
mod listing;
mod machine;
pub(crate) mod object;
pub(crate) mod places;
mod platform;
mod root;
mod search;
pub mod symbols;
mod tree;

pub use object::{bloom_assertion, read_header, ElfHeader};
pub use places::{places, resolves_to, Place, Seen};
pub use platform::Platform;
pub use search::Reason;
pub use tree::{closure, closure_in, Closure, Context, Edge, ShippedWith, Target, INTERP, ROOT};

/// A fast hash for the closure's maps of paths and names (which come from
/// the files being read, not from an adversary racing our hash table):
/// SipHash was a tenth of `deps`'s time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        }
        let mut last = [0u8; 8];
        let tail = words.remainder();
        last[..tail.len()].copy_from_slice(tail);
        self.add(u64::from_le_bytes(last) ^ ((tail.len() as u64) << 56));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::FastMap;

    #[test]
    fn fast_map_keeps_paths_that_differ_only_in_their_tail_apart() {
        let mut m: FastMap<Vec<u8>, usize> = FastMap::default();
        for (i, k) in
            [&b"/usr/lib/libc.so.6"[..], b"/usr/lib/libc.so.7", b"/usr/lib/libc.so", b"", b"\0"].iter().enumerate()
        {
            m.insert(k.to_vec(), i);
        }
        assert_eq!(m.len(), 5);
        assert_eq!(m.get(&b"/usr/lib/libc.so.7"[..]), Some(&1));
        assert_eq!(m.get(&b"\0"[..]), Some(&4));
    }
}
