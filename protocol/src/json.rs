//! A JSON object writer over a caller-provided buffer: no allocation, so the
//! audit module can format an event while the loader lock is held.
//!
//! Bytes that are not UTF-8 (paths and argv may hold any bytes) are written as
//! U+FFFD: JSON strings cannot carry raw bytes.

/// Writes one JSON object, then `finish` ends it with `}\n`.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
    need_comma: bool,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        let mut w = Writer { buf, len: 0, overflow: false, need_comma: false };
        w.raw(b"{");
        w
    }

    /// Bytes still free, keeping room for the closing `}\n`.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.len + 2)
    }

    pub fn str(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key);
        self.string(value);
        self
    }

    /// A string made of `parts`, one after another.
    pub fn str_concat(&mut self, key: &str, parts: &[&[u8]]) -> &mut Self {
        self.key(key);
        self.raw(b"\"");
        for p in parts {
            self.escaped(p);
        }
        self.raw(b"\"");
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.number(value as i128);
        self
    }

    pub fn i64(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.number(value as i128);
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.raw(if value { b"true" } else { b"false" });
        self
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.raw(b"null");
        self
    }

    /// An array of strings; stops early (and reports it) when the buffer
    /// would leave less than `reserve` bytes for what follows.
    pub fn str_array<'s>(&mut self, key: &str, items: impl Iterator<Item = &'s [u8]>, reserve: usize) -> bool {
        self.key(key);
        self.raw(b"[");
        let mut complete = true;
        for (i, item) in items.enumerate() {
            // Worst case every byte becomes a six-byte escape.
            if self.remaining() < reserve + item.len() * 6 + 4 {
                complete = false;
                break;
            }
            if i > 0 {
                self.raw(b",");
            }
            self.string(item);
        }
        self.raw(b"]");
        complete
    }

    /// Starts a nested object under `key`; close it with [`Writer::end_object`].
    pub fn begin_object(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.raw(b"{");
        self.need_comma = false;
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.raw(b"}");
        self.need_comma = true;
        self
    }

    /// The finished line, or `None` when it did not fit.
    pub fn finish(mut self) -> Option<&'a [u8]> {
        self.raw(b"}\n");
        if self.overflow {
            return None;
        }
        let Writer { buf, len, .. } = self;
        Some(&buf[..len])
    }

    fn key(&mut self, key: &str) {
        if self.need_comma {
            self.raw(b",");
        }
        self.need_comma = true;
        self.string(key.as_bytes());
        self.raw(b":");
    }

    fn number(&mut self, value: i128) {
        let mut digits = [0u8; 40];
        let mut i = digits.len();
        let negative = value < 0;
        let mut v = value.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if negative {
            i -= 1;
            digits[i] = b'-';
        }
        self.raw(&digits[i..]);
    }

    fn string(&mut self, value: &[u8]) {
        self.raw(b"\"");
        self.escaped(value);
        self.raw(b"\"");
    }

    fn escaped(&mut self, value: &[u8]) {
        for chunk in value.utf8_chunks() {
            for &b in chunk.valid().as_bytes() {
                match b {
                    b'"' => self.raw(b"\\\""),
                    b'\\' => self.raw(b"\\\\"),
                    b'\n' => self.raw(b"\\n"),
                    b'\t' => self.raw(b"\\t"),
                    b'\r' => self.raw(b"\\r"),
                    0..=0x1f | 0x7f => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        self.raw(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                    }
                    _ => self.raw(&[b]),
                }
            }
            if !chunk.invalid().is_empty() {
                self.raw("\u{fffd}".as_bytes());
            }
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.overflow = true,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn parse(line: &[u8]) -> serde_json::Value {
        assert_eq!(line.last(), Some(&b'\n'));
        serde_json::from_slice(line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
    }

    #[test]
    fn writes_valid_json_for_hostile_bytes() {
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        w.str("path", b"/a \"b\"\\c\n\x01\xff\xfe/d").u64("n", u64::MAX).i64("m", -42).bool("t", true).null("x");
        w.begin_object("env").str("K", b"v").end_object();
        w.str_array("argv", [&b"a"[..], b"b c"].into_iter(), 0);
        w.str_concat("err", &[b"lib\"x", b": no"]);
        let v = parse(w.finish().unwrap_or_default());
        assert_eq!(v["path"], "/a \"b\"\\c\n\u{1}\u{fffd}\u{fffd}/d");
        assert_eq!(v["n"], u64::MAX);
        assert_eq!(v["m"], -42);
        assert_eq!(v["t"], true);
        assert!(v["x"].is_null());
        assert_eq!(v["env"]["K"], "v");
        assert_eq!(v["argv"][1], "b c");
        assert_eq!(v["err"], "lib\"x: no");
    }

    #[test]
    fn overflow_gives_none_not_a_torn_line() {
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        w.str("path", b"/a/very/long/path/indeed");
        assert!(w.finish().is_none());
    }

    #[test]
    fn str_array_stops_before_the_reserve() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        let items = [&b"aaaa"[..]; 20];
        let complete = w.str_array("argv", items.iter().copied(), 8);
        w.bool("truncated", !complete);
        let v = parse(w.finish().unwrap_or_default());
        assert_eq!(v["truncated"], true);
        assert!(!v["argv"].as_array().map(|a| a.is_empty()).unwrap_or(true));
    }
}
