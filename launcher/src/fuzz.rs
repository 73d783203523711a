//! Mutation fuzzing of every parser of outside input: ELF files (their
//! headers, and the symbol, hash and version tables and relocations that
//! `deps --check` reads), the ld.so.cache, config and lock files (TOML), pin
//! specs, and trace lines.
//! Each parser must return a value or an error, never panic, for any input.
//!
//! `cargo fuzz` needs a nightly toolchain; this is the same idea with the
//! standard test runner: seeds from real files, a deterministic xorshift
//! generator, byte flips, overwrites with boundary values, insertions,
//! deletions, truncations and splices. Each target runs a few hundred
//! iterations in the normal test run; `scripts/fuzz SECONDS` runs every
//! target for that long (CULAUNCH_FUZZ_SECONDS).

use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(b.len() + 1);
        let last = b.len().saturating_sub(1);
        match rng.below(7) {
            0 if !b.is_empty() => b[at.min(last)] ^= 1 << rng.below(8),
            1 if !b.is_empty() => {
                const EDGES: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
                let v = EDGES[rng.below(EDGES.len())];
                let end = (at + 1 + rng.below(8)).min(b.len());
                b[at.min(last)..end].fill(v);
            }
            2 => b.insert(at, rng.next() as u8),
            3 if at < b.len() => {
                let end = (at + rng.below(32)).min(b.len());
                b.drain(at..end);
            }
            4 => b.truncate(at),
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from.min(other.len()) + 1);
                b.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => {}
        }
    }
    b
}

/// Runs `target` on mutations of `seeds` for the configured budget.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, default_iterations: usize, target: impl Fn(&[u8])) {
    let budget = std::env::var("CULAUNCH_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).map(Duration::from_secs);
    let start = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let mut n = 0usize;
    let mut slowest = (Duration::ZERO, Vec::new());
    for s in &seeds {
        target(s);
    }
    loop {
        match budget {
            Some(b) if start.elapsed() >= b => break,
            None if n >= default_iterations => break,
            _ => {}
        }
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, &seeds);
        let t = Instant::now();
        target(&input);
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), input);
        }
        n += 1;
    }
    if budget.is_some() {
        eprintln!("fuzz {name}: {n} inputs in {:.0?}, no panic; the slowest took {:.1?}", start.elapsed(), slowest.0);
        if let Some(dir) = std::env::var_os("CULAUNCH_FUZZ_SLOWEST") {
            let _ = std::fs::write(std::path::Path::new(&dir).join(format!("{name}.slowest")), &slowest.1);
        }
    }
}

fn file(path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[test]
fn elf_headers() {
    let mut seeds: Vec<Vec<u8>> = ["/bin/true", "/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2"]
        .iter()
        .filter_map(|p| file(p))
        .collect();
    // Keep the seeds small: the headers and dynamic section sit at the front
    // of these files, and mutations far beyond them teach nothing.
    for s in &mut seeds {
        s.truncate(64 * 1024);
    }
    fuzz("elf", seeds, 300, |b| {
        let _ = crate::elf::object::parse_bytes(b);
    });
}

/// `deps --check` walks the hash chains, version tables and relocations
/// of every file of the closure, all of them outside data: a damaged
/// library must give a report or an error, never a panic or a hang.
#[test]
fn symbol_tables_as_deps_check_reads_them() {
    let Some(seed) = file("/lib/x86_64-linux-gnu/libz.so.1") else { return };
    let dir = std::env::temp_dir().join(format!("culaunch-fuzz-symbols-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let path = dir.join("libfuzz.so");
    // The dynamic tables sit in the first pages: mutate those, keep the
    // rest, so that most inputs still load far enough to be checked.
    let (front, back) = seed.split_at(seed.len().min(16 * 1024));
    fuzz("symbols", vec![front.to_vec()], 150, |b| {
        if std::fs::write(&path, [b, back].concat()).is_ok() {
            if let Ok(closure) = crate::elf::closure(&path) {
                let _ = crate::elf::symbols::check(&closure, b"fuzz");
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ld_so_cache() {
    let seeds: Vec<Vec<u8>> = file("/etc/ld.so.cache").into_iter().collect();
    if seeds.is_empty() {
        return;
    }
    fuzz("ld.so.cache", seeds, 2000, |b| {
        if let Some(c) = crate::elf::cache::Cache::parse(b) {
            let _ = c.lookup(b"libc.so.6", &[b"x86-64-v3".to_vec()]);
        }
    });
}

#[test]
fn config_files() {
    let seeds = vec![
        b"trace = \"t.jsonl\"\nall_libs = true\nstrict = true\ntoolkit = \"/usr/local/cuda\"\nlocked = \"l\"\n[pins]\n\"libcudart.so.12\" = \"/x/libcudart.so.12\"\n".to_vec(),
        b"strict = false\n".to_vec(),
    ];
    fuzz("config", seeds, 3000, |b| {
        let _ = crate::plan::config::parse(&String::from_utf8_lossy(b));
    });
}

#[test]
fn lock_files() {
    let seeds = vec![
        b"version = 1\n[[lib]]\nsoname = \"libcudart.so.12\"\npath = \"/x/libcudart.so.12\"\nsha256 = \"ab\"\nversion = \"12.9.79\"\n".to_vec(),
    ];
    fuzz("lock", seeds, 3000, |b| {
        let _ = crate::plan::lock::parse(&String::from_utf8_lossy(b));
    });
}

#[test]
fn pin_specs() {
    let seeds = vec![b"libcudart.so.12=/opt/cuda/lib64/libcudart.so.12".to_vec(), b"a=b=c".to_vec()];
    fuzz("pin", seeds, 3000, |b| {
        use std::os::unix::ffi::OsStrExt;
        let _ = crate::cli::parse_pin(std::ffi::OsStr::from_bytes(b));
    });
}

#[test]
fn trace_lines() {
    let seeds = vec![
        br#"{"v":1,"ts":"2026-11-29T22:58:02.216340Z","pid":3003,"ppid":2992,"host":"vm","event":"process_start","exe":"/tmp/m3","argv":["./m3"],"env":{}}"#.to_vec(),
        br#"{"v":1,"pid":1,"host":"h","event":"load","request":"libcudart.so.12","how":"needed","caller":"/x/libtorch_cuda.so","path":"/w/libcudart.so.12","soname":"libcudart.so.12","cuda":true,"family":"cudart","pinned":true,"redirected_from":"libcudart.so.12","ok":true,"error":null,"dur_us":3}"#.to_vec(),
        br#"{"v":1,"pid":1,"host":"h","event":"conflict","family":"cudart","paths":["/a","/b"]}"#.to_vec(),
        br#"{"v":1,"pid":1,"host":"h","event":"deny","request":"x","caller":null,"reason":"r"}"#.to_vec(),
    ];
    fuzz("trace", seeds, 3000, |b| {
        let mut text = b.to_vec();
        text.push(b'\n');
        text.extend_from_slice(b);
        if let Ok((events, bad)) = crate::report::events::parse(&text[..]) {
            let s = crate::report::summarise(&events, bad, &[], crate::report::summary::Reads::Files);
            let _ = crate::report::render::text(&s);
        }
    });
}
