//! PEP 508 requirements as `Requires-Dist` writes them:
//! `name[extra,…] specifiers ; marker`, with the marker evaluated against a
//! given environment (never this interpreter's: the site may be another's).

use super::version::{Specifiers, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Normalised (PEP 503): lowercase, runs of `-_.` as one `-`.
    pub name: String,
    pub extras: Vec<String>,
    pub specifiers: Specifiers,
    /// The text as written, before the marker: for messages.
    pub text: String,
    marker: Option<Marker>,
}

/// What a marker may ask about the target environment.
#[derive(Debug, Clone)]
pub struct Environment {
    pub python_version: String,
    pub platform_machine: String,
}

impl Environment {
    fn value(&self, var: &str) -> Option<String> {
        let v = match var {
            "python_version" => self.python_version.clone(),
            "python_full_version" => format!("{}.0", self.python_version),
            "platform_machine" => self.platform_machine.clone(),
            "sys_platform" => "linux".into(),
            "platform_system" => "Linux".into(),
            "os_name" => "posix".into(),
            "implementation_name" => "cpython".into(),
            "platform_python_implementation" => "CPython".into(),
            _ => return None,
        };
        Some(v)
    }
}

pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

impl Requirement {
    pub fn parse(line: &str) -> Option<Requirement> {
        let (head, marker) = match line.split_once(';') {
            Some((h, m)) => (h.trim(), Some(Marker::parse(m)?)),
            None => (line.trim(), None),
        };
        let name_end =
            head.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).unwrap_or(head.len());
        let name = normalise(&head[..name_end]);
        if name.is_empty() {
            return None;
        }
        let mut rest = head[name_end..].trim_start();
        let mut extras = Vec::new();
        if let Some(r) = rest.strip_prefix('[') {
            let (inside, after) = r.split_once(']')?;
            extras = inside.split(',').map(normalise).filter(|e| !e.is_empty()).collect();
            rest = after.trim_start();
        }
        // A direct reference (`name @ url`) names no release.
        let spec_text = if rest.starts_with('@') {
            ""
        } else {
            rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or(rest)
        };
        Some(Requirement { name, extras, specifiers: Specifiers::parse(spec_text)?, text: head.to_owned(), marker })
    }

    /// Whether the requirement applies in `env` when the distribution was
    /// installed with `extras` (pip evaluates the marker once per extra,
    /// and once with none).
    pub fn applies(&self, env: &Environment, extras: &[String]) -> bool {
        let Some(m) = &self.marker else { return true };
        std::iter::once("").chain(extras.iter().map(String::as_str)).any(|extra| m.eval(env, extra))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    Or(Vec<Marker>),
    And(Vec<Marker>),
    Compare(Value, String, Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Var(String),
    Text(String),
}

impl Marker {
    fn parse(s: &str) -> Option<Marker> {
        let tokens = tokenize(s)?;
        let mut at = 0;
        let m = parse_or(&tokens, &mut at)?;
        (at == tokens.len()).then_some(m)
    }

    fn eval(&self, env: &Environment, extra: &str) -> bool {
        match self {
            Marker::Or(ms) => ms.iter().any(|m| m.eval(env, extra)),
            Marker::And(ms) => ms.iter().all(|m| m.eval(env, extra)),
            Marker::Compare(l, op, r) => {
                let is_extra = matches!(l, Value::Var(v) if v == "extra") || matches!(r, Value::Var(v) if v == "extra");
                let get = |v: &Value| match v {
                    Value::Var(name) if name == "extra" => Some(normalise(extra)),
                    Value::Var(name) => env.value(name),
                    Value::Text(t) if is_extra => Some(normalise(t)),
                    Value::Text(t) => Some(t.clone()),
                };
                let (Some(l), Some(r)) = (get(l), get(r)) else { return false };
                compare(&l, op, &r)
            }
        }
    }
}

fn compare(l: &str, op: &str, r: &str) -> bool {
    match op {
        "in" => return r.contains(l),
        "not in" => return !r.contains(l),
        _ => {}
    }
    if let (Some(_), Some(spec)) = (Version::parse(l), Specifiers::parse(&format!("{op}{r}"))) {
        return spec.contains(l);
    }
    match op {
        "==" | "===" => l == r,
        "!=" => l != r,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Op(String),
    Value(Value),
}

fn tokenize(s: &str) -> Option<Vec<Token>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                let end = i + 1 + b[i + 1..].iter().position(|&c| c == q)?;
                out.push(Token::Value(Value::Text(s[i + 1..end].to_owned())));
                i = end + 1;
            }
            b'<' | b'>' | b'=' | b'!' | b'~' => {
                let end = i + b[i..].iter().position(|c| !b"<>=!~".contains(c)).unwrap_or(b.len() - i);
                out.push(Token::Op(s[i..end].to_owned()));
                i = end;
            }
            _ => {
                let end = i + b[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
                    .unwrap_or(b.len() - i);
                if end == i {
                    return None;
                }
                let word = &s[i..end];
                i = end;
                match word {
                    "and" => out.push(Token::And),
                    "or" => out.push(Token::Or),
                    "in" => out.push(Token::Op("in".into())),
                    "not" => {
                        // Only `not in` exists.
                        let rest = s[i..].trim_start();
                        rest.strip_prefix("in")?;
                        i = s.len() - rest.len() + 2;
                        out.push(Token::Op("not in".into()));
                    }
                    _ => out.push(Token::Value(Value::Var(word.to_owned()))),
                }
            }
        }
    }
    Some(out)
}

fn parse_or(t: &[Token], at: &mut usize) -> Option<Marker> {
    let mut parts = vec![parse_and(t, at)?];
    while t.get(*at) == Some(&Token::Or) {
        *at += 1;
        parts.push(parse_and(t, at)?);
    }
    Some(if parts.len() == 1 { parts.remove(0) } else { Marker::Or(parts) })
}

fn parse_and(t: &[Token], at: &mut usize) -> Option<Marker> {
    let mut parts = vec![parse_atom(t, at)?];
    while t.get(*at) == Some(&Token::And) {
        *at += 1;
        parts.push(parse_atom(t, at)?);
    }
    Some(if parts.len() == 1 { parts.remove(0) } else { Marker::And(parts) })
}

fn parse_atom(t: &[Token], at: &mut usize) -> Option<Marker> {
    if t.get(*at) == Some(&Token::Open) {
        *at += 1;
        let m = parse_or(t, at)?;
        if t.get(*at) != Some(&Token::Close) {
            return None;
        }
        *at += 1;
        return Some(m);
    }
    let (Some(Token::Value(l)), Some(Token::Op(op)), Some(Token::Value(r))) =
        (t.get(*at), t.get(*at + 1), t.get(*at + 2))
    else {
        return None;
    };
    *at += 3;
    Some(Marker::Compare(l.clone(), op.clone(), r.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment { python_version: "3.11".into(), platform_machine: "x86_64".into() }
    }

    #[test]
    fn torch_and_tensorflow_requirements_parse_and_apply() {
        let r = Requirement::parse(r#"nvidia-cudnn-cu13==9.26.0.51; platform_system == "Linux""#).expect("parses");
        assert_eq!(r.name, "nvidia-cudnn-cu13");
        assert!(r.applies(&env(), &[]));
        assert!(r.specifiers.contains("9.26.0.51") && !r.specifiers.contains("9.28.0.42"));

        let r = Requirement::parse(
            "cuda-toolkit[cublas,cudart,cufft]==13.2.2; platform_system == \"Linux\" and python_version < \"3.15\"",
        )
        .expect("parses");
        assert_eq!(r.extras, ["cublas", "cudart", "cufft"]);
        assert!(r.applies(&env(), &[]));

        let r = Requirement::parse(r#"nvidia-cudnn-cu12<10.0,>=9.3.0.75; extra == "and-cuda""#).expect("parses");
        assert!(!r.applies(&env(), &[]));
        assert!(r.applies(&env(), &["and-cuda".into()]));
        assert!(r.specifiers.contains("9.28.0.42"));

        let r = Requirement::parse(
            "nvidia-cuda-runtime==13.2.86.*; (sys_platform == 'linux' and platform_machine == 'aarch64' or \
             sys_platform == 'linux' and platform_machine == 'x86_64' or sys_platform == 'win32' and \
             platform_machine == 'AMD64') and extra == 'cudart'",
        )
        .expect("parses");
        assert!(r.applies(&env(), &["cudart".into()]));
        assert!(!r.applies(&env(), &["cublas".into()]));
        assert!(!r.applies(&Environment { platform_machine: "ppc64le".into(), ..env() }, &["cudart".into()]));
    }

    #[test]
    fn odd_requirements_parse_or_are_refused_without_panic() {
        assert_eq!(Requirement::parse("Foo_Bar.baz (>=1.0)").map(|r| r.name), Some("foo-bar-baz".into()));
        assert!(Requirement::parse("pkg @ https://example.invalid/x.whl").is_some());
        assert!(Requirement::parse("x; python_version not in '3.8, 3.9'").is_some_and(|r| r.applies(&env(), &[])));
        for bad in ["", "; x == 'y'", "x; (", "x; a ==", "x[a", "x; 'a' == 'b' and"] {
            assert!(Requirement::parse(bad).is_none(), "{bad:?}");
        }
    }
}
