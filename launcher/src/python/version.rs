//! PEP 440 versions and specifiers, as far as installed distributions need
//! them: ordering (epoch, release, pre, post, dev, local) and the operators
//! `==` (with `.*`), `!=`, `<`, `<=`, `>`, `>=`, `~=`, `===`.

use std::cmp::Ordering;

#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    release: Vec<u64>,
    /// (0 = a, 1 = b, 2 = rc, number).
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Strings sort before numbers (PEP 440: "numeric segments sort higher").
    Text(String),
    Number(u64),
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let (public, local) = match s.split_once('+') {
            Some((p, l)) => (p, Some(l)),
            None => (s, None),
        };
        let local = match local {
            Some(l) => l
                .split(['.', '-', '_'])
                .map(|p| match p.parse() {
                    Ok(n) => Some(LocalPart::Number(n)),
                    Err(_) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                        Some(LocalPart::Text(p.to_owned()))
                    }
                    Err(_) => None,
                })
                .collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        let (epoch, rest) = match public.split_once('!') {
            Some((e, r)) => (e.parse().ok()?, r),
            None => (0, public),
        };
        let mut p = Cursor { s: rest.as_bytes(), at: 0 };
        let mut release = vec![p.number()?];
        while p.peek() == Some(b'.') && p.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            p.at += 1;
            release.push(p.number()?);
        }
        let mut v = Version { epoch, release, pre: None, post: None, dev: None, local };
        p.separator();
        for (word, rank) in
            [("alpha", 0), ("a", 0), ("beta", 1), ("b", 1), ("rc", 2), ("c", 2), ("preview", 2), ("pre", 2)]
        {
            if p.word(word) {
                p.separator();
                v.pre = Some((rank, p.number().unwrap_or(0)));
                break;
            }
        }
        p.separator();
        if p.word("post") || p.word("rev") || p.word("r") {
            p.separator();
            v.post = Some(p.number().unwrap_or(0));
        } else if v.pre.is_none() && p.at > 0 && p.s.get(p.at - 1) == Some(&b'-') {
            // `1.0-1` is an implicit post-release.
            v.post = p.number();
        }
        p.separator();
        if p.word("dev") {
            p.separator();
            v.dev = Some(p.number().unwrap_or(0));
        }
        (p.at == p.s.len()).then_some(v)
    }

    fn is_pre(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    fn public(&self) -> Version {
        Version { local: Vec::new(), ..self.clone() }
    }

    /// The release padded or cut to `n` components.
    fn release_prefix(&self, n: usize) -> Vec<u64> {
        (0..n).map(|i| self.release.get(i).copied().unwrap_or(0)).collect()
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.at + k).copied()
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at]).ok()?.parse().ok()
    }
    fn separator(&mut self) {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) && self.peek_at(1).is_some_and(|b| b.is_ascii_alphanumeric())
        {
            self.at += 1;
        }
    }
    fn word(&mut self, w: &str) -> bool {
        if self.s[self.at..].starts_with(w.as_bytes()) {
            self.at += w.len();
            true
        } else {
            false
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        fn trimmed(r: &[u64]) -> &[u64] {
            let n = r.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
            &r[..n]
        }
        // A dev release of a final version sorts before its pre-releases.
        let pre_key = |v: &Version| match (v.pre, v.post, v.dev) {
            (None, None, Some(_)) => (0u8, 0u8, 0u64),
            (None, _, _) => (2, 0, 0),
            (Some((rank, n)), _, _) => (1, rank, n),
        };
        let post_key = |v: &Version| v.post.map_or((0u8, 0u64), |n| (1, n));
        let dev_key = |v: &Version| v.dev.map_or((1u8, 0u64), |n| (0, n));
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| trimmed(&self.release).cmp(trimmed(&other.release)))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            .then_with(|| post_key(self).cmp(&post_key(other)))
            .then_with(|| dev_key(self).cmp(&dev_key(other)))
            .then_with(|| self.local.cmp(&other.local))
    }
}

// Equality is the ordering's: `1.0 == 1.0.0`.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One clause of a specifier set, e.g. `>=9.3.0.75` or `==13.2.86.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    op: Op,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    EqPrefix,
    Ne,
    NePrefix,
    Lt,
    Le,
    Gt,
    Ge,
    Compatible,
    Arbitrary,
}

impl Clause {
    pub fn parse(s: &str) -> Option<Clause> {
        let s = s.trim();
        let ops = [
            ("===", Op::Arbitrary),
            ("~=", Op::Compatible),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (mut op, rest) = ops.iter().find_map(|(t, op)| s.strip_prefix(t).map(|r| (*op, r.trim())))?;
        let mut text = rest.to_owned();
        if let Some(prefix) = rest.strip_suffix(".*") {
            op = match op {
                Op::Eq => Op::EqPrefix,
                Op::Ne => Op::NePrefix,
                _ => return None,
            };
            text = prefix.to_owned();
        }
        if op != Op::Arbitrary {
            Version::parse(&text)?;
        }
        Some(Clause { op, text })
    }

    pub fn contains(&self, v: &Version, raw: &str) -> bool {
        if self.op == Op::Arbitrary {
            return raw.trim().eq_ignore_ascii_case(&self.text);
        }
        let Some(spec) = Version::parse(&self.text) else { return false };
        let prefix_match =
            |spec: &Version| v.epoch == spec.epoch && v.release_prefix(spec.release.len()) == spec.release;
        match self.op {
            Op::Eq if spec.local.is_empty() => v.public() == spec,
            Op::Eq => *v == spec,
            Op::Ne => !Clause { op: Op::Eq, text: self.text.clone() }.contains(v, raw),
            Op::EqPrefix => prefix_match(&spec),
            Op::NePrefix => !prefix_match(&spec),
            Op::Le => v.public() <= spec,
            Op::Ge => v.public() >= spec,
            // `<V` excludes pre-releases of V itself unless V is one.
            Op::Lt => {
                v.public() < spec
                    && !(!spec.is_pre() && v.is_pre() && v.release_prefix(spec.release.len()) == spec.release)
            }
            // `>V` excludes post-releases and local versions of V.
            Op::Gt => {
                v.public() > spec
                    && !(spec.post.is_none()
                        && v.post.is_some()
                        && v.release_prefix(spec.release.len()) == spec.release)
            }
            Op::Compatible => {
                let n = spec.release.len().saturating_sub(1).max(1);
                let head = Version { release: spec.release[..n].to_vec(), ..spec.public() };
                v.public() >= spec && v.epoch == spec.epoch && v.release_prefix(n) == head.release
            }
            Op::Arbitrary => false,
        }
    }
}

/// A comma-separated set of clauses; empty means any version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Specifiers(Vec<Clause>);

impl Specifiers {
    pub fn parse(s: &str) -> Option<Specifiers> {
        let s = s.trim();
        if s.is_empty() {
            return Some(Specifiers::default());
        }
        s.split(',').map(Clause::parse).collect::<Option<Vec<_>>>().map(Specifiers)
    }

    pub fn contains(&self, version: &str) -> bool {
        match Version::parse(version) {
            Some(v) => self.0.iter().all(|c| c.contains(&v, version)),
            None => self.0.iter().all(|c| c.op == Op::Arbitrary && c.contains(&Version::default_zero(), version)),
        }
    }
}

impl Version {
    fn default_zero() -> Version {
        Version { epoch: 0, release: vec![0], pre: None, post: None, dev: None, local: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn versions_order_as_pep_440_says() {
        let ordered = ["1.0.dev1", "1.0a1", "1.0a2.dev1", "1.0b1", "1.0rc1", "1.0", "1.0+local", "1.0.post1", "1.1"];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0").cmp(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("9.26.0.51").cmp(&v("9.28.0.42")), Ordering::Less);
        assert!(Version::parse("not a version").is_none());
    }

    #[test]
    fn specifiers_as_frameworks_write_them() {
        let s = |spec: &str, ver: &str| Specifiers::parse(spec).expect(spec).contains(ver);
        assert!(s("==9.26.0.51", "9.26.0.51"));
        assert!(!s("==9.26.0.51", "9.28.0.42"));
        assert!(s("<10.0,>=9.3.0.75", "9.28.0.42"));
        assert!(!s("<10.0,>=9.3.0.75", "10.0.0"));
        assert!(s("==13.2.86.*", "13.2.86.1"));
        assert!(!s("==13.2.86.*", "13.2.87"));
        assert!(s("~=3.9.0", "3.9.4"));
        assert!(!s("~=3.9.0", "3.10.0"));
        assert!(s("~=2.2", "2.9"));
        assert!(s("<14,>=13.2.86", "13.5.37"));
        assert!(s("!=1.0", "1.1"));
        assert!(!s("<2.0", "2.0rc1"));
        assert!(s("", "anything"));
        assert!(Specifiers::parse(">=x").is_none());
    }
}
