//! Stage 4: the summary as text for a terminal (fits 100 columns, needs no
//! colour) and as JSON, both from the same value.

use std::fmt::Write;

use super::summary::{Library, Summary};
use crate::error::Error;
use crate::vocab::basename;

/// The summary as readers of `--summary-json` and `report --json` get it.
pub fn json(s: &Summary) -> Result<String, Error> {
    serde_json::to_string_pretty(s).map_err(Error::Json)
}

const WIDTH: usize = 100;

pub fn text(s: &Summary) -> String {
    let mut out = String::new();
    let hosts: std::collections::BTreeSet<&str> = s.processes.iter().map(|p| p.host.as_str()).collect();
    let _ = writeln!(
        out,
        "culaunch: {} traced, {} CUDA {}{}{}",
        plural(s.processes.len(), "process", "processes"),
        s.libraries.len(),
        if s.libraries.len() == 1 { "library" } else { "libraries" },
        if hosts.len() > 1 { format!(" on {} hosts", hosts.len()) } else { String::new() },
        if s.conflicts.is_empty() {
            String::new()
        } else {
            format!(", {}", plural(s.conflicts.len(), "conflict", "conflicts"))
        },
    );
    if !s.libraries.is_empty() {
        let rows: Vec<[String; 5]> = s.libraries.iter().map(row).collect();
        let header = ["family", "soname", "version", "procs", "loaded"].map(str::to_owned);
        // 2 + 4 gaps of 2 + these = 100 columns.
        let caps = [10, 24, 10, 5, 41];
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0).min(caps[c]))
            .collect();
        let line = |r: &[String; 5]| {
            let cells: Vec<String> = (0..5).map(|c| pad(&r[c], widths[c], c == 3)).collect();
            format!("  {}", cells.join("  ")).trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&header).to_uppercase());
        for (lib, r) in s.libraries.iter().zip(&rows) {
            let _ = writeln!(out, "{}", line(r));
            let from = format!("{}: {}", lib.origin.label(), lib.path);
            let _ = writeln!(out, "    {}", elide_middle(&from, WIDTH - 4));
        }
    }
    if !s.conflicts.is_empty() {
        let _ = writeln!(out, "conflicts (two files of one CUDA library in one process):");
        for c in &s.conflicts {
            let exe = s
                .processes
                .iter()
                .find(|p| p.pid == c.pid && p.host == c.host)
                .and_then(|p| p.exe.as_deref())
                .map(basename)
                .unwrap_or("?");
            let _ = writeln!(out, "  pid {} ({exe}): {}", c.pid, c.family);
            for p in &c.paths {
                let _ = writeln!(out, "    {}", elide_middle(p, WIDTH - 4));
            }
        }
    }
    if !s.diagnoses.is_empty() {
        let _ = writeln!(out, "diagnoses:");
        for d in &s.diagnoses {
            let pid = d.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
            let _ = writeln!(out, "  [{}]{pid}", d.kind.as_str());
            for line in wrap(&d.message, WIDTH - 4) {
                let _ = writeln!(out, "    {line}");
            }
            let _ = writeln!(out, "    rule: {}", elide_middle(&d.rule, WIDTH - 10));
        }
    }
    if !s.probes.is_empty() {
        let _ = writeln!(out, "not found (probes the program may have tolerated):");
        let mut seen = std::collections::BTreeSet::new();
        for p in &s.probes {
            let by = p.caller.as_deref().map(basename).unwrap_or("?");
            if seen.insert((p.request.as_str(), by)) {
                let n = s
                    .probes
                    .iter()
                    .filter(|q| q.request == p.request && q.caller.as_deref().map(basename).unwrap_or("?") == by)
                    .count();
                let times = if n > 1 { format!(", {n} times") } else { String::new() };
                let line = format!("{} (requested by {by}{times})", p.request);
                let _ = writeln!(out, "  {}", elide_middle(&line, WIDTH - 2));
            }
        }
    }
    if !s.untraced.is_empty() {
        let _ = writeln!(out, "not traced (started by traced processes):");
        let mut seen = std::collections::BTreeSet::new();
        for u in &s.untraced {
            if seen.insert((u.exe.as_str(), u.reason.as_str())) {
                let _ = writeln!(out, "  {}", elide_middle(&u.exe, WIDTH - 2));
                let _ = writeln!(out, "    {}", elide_middle(&u.reason, WIDTH - 4));
            }
        }
    }
    if !s.denials.is_empty() {
        let _ = writeln!(out, "refused:");
        for d in &s.denials {
            let by = d.caller.as_deref().map(basename).unwrap_or("?");
            let line = format!("pid {}: {} (requested by {by})", d.pid, d.request);
            let _ = writeln!(out, "  {}", elide_middle(&line, WIDTH - 2));
            let _ = writeln!(out, "    {}", elide_middle(&d.reason, WIDTH - 4));
        }
    }
    if !s.pins.is_empty() {
        let _ = writeln!(out, "pins:");
        for p in &s.pins {
            let used = match p.used_in.len() {
                0 => "UNUSED".to_owned(),
                n => format!("used in {}", plural(n, "process", "processes")),
            };
            let _ = writeln!(out, "  {}  {used}", p.soname);
            let _ = writeln!(out, "    {}", elide_middle(&p.path, WIDTH - 4));
        }
    }
    if let Some(note) = &s.machine.note {
        for (i, line) in wrap(&format!("note: {note}"), WIDTH - 2).into_iter().enumerate() {
            let _ = writeln!(out, "{}{line}", if i == 0 { "" } else { "  " });
        }
    }
    if s.malformed_lines > 0 {
        let _ = writeln!(out, "note: {} trace lines were not valid events and were skipped", s.malformed_lines);
    }
    out
}

fn row(lib: &Library) -> [String; 5] {
    let how = lib.how.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(",");
    let by = lib.callers.iter().map(|c| basename(c)).collect::<Vec<_>>().join(",");
    let loaded = if by.is_empty() { how } else { format!("{how} by {by}") };
    [
        lib.family.to_string(),
        lib.soname.clone().unwrap_or_else(|| basename(&lib.path).to_owned()),
        lib.version.clone().unwrap_or_else(|| "?".to_owned()),
        lib.processes.len().to_string(),
        loaded,
    ]
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Pads or cuts `s` to `width` characters; a cut ends in `…`.
fn pad(s: &str, width: usize, right: bool) -> String {
    let n = s.chars().count();
    let cell = if n > width {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        s.to_owned()
    };
    if right {
        format!("{cell:>width$}")
    } else {
        format!("{cell:<width$}")
    }
}

/// Splits `text` at spaces into lines of at most `width` characters; a
/// word longer than that (a path) is elided in its middle.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let word = elide_middle(word, width);
        let last = lines.last_mut().map(|l| l.chars().count()).unwrap_or(0);
        if last > 0 && last + 1 + word.chars().count() > width {
            lines.push(word);
        } else if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(&word);
        }
    }
    lines
}

/// Keeps both ends of a long path: the directory that says where, the file
/// name that says what.
fn elide_middle(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_owned();
    }
    let keep = width.saturating_sub(1);
    let head: String = s.chars().take(keep / 2).collect();
    let tail: String = s.chars().skip(n - (keep - keep / 2)).collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::provenance::Origin;
    use crate::report::summary::{Conflict, Denial, PinUse, Process};
    use crate::rules::{Diagnosis, Kind};
    use crate::vocab::{Family, Tag, VersionSource};
    use culaunch_protocol::event::How;

    #[test]
    fn every_line_fits_a_hundred_columns() {
        let long = format!("/{}/lib/libcudart.so.12", "very-long-directory-name".repeat(10));
        let lib = Library {
            family: Tag::Known(Family::Cudart),
            soname: Some("libcudart.so.12".into()),
            path: long.clone(),
            version: Some("12.9.79.post1+local.build".into()),
            version_source: Some(VersionSource::Pip),
            origin: Origin::Pip {
                package: "nvidia-cuda-runtime-cu12-with-a-long-name".into(),
                version: "12.9.79".into(),
                record_hash: crate::report::provenance::RecordHash::Matches,
            },
            how: [Tag::Known(How::Dlopen), Tag::Known(How::Needed)].into(),
            callers: ["/usr/lib/python3/dist-packages/torch/lib/libtorch_cuda_linalg_and_more.so".to_owned()].into(),
            search: Default::default(),
            processes: ["h:1".to_owned()].into(),
            pinned: false,
        };
        let s = Summary {
            processes: vec![Process {
                host: "h".into(),
                pid: 1,
                ppid: 0,
                exe: Some("/usr/bin/python3".into()),
                argv: vec![],
                forked: false,
                exit_status: None,
            }],
            libraries: vec![lib],
            conflicts: vec![Conflict {
                host: "h".into(),
                pid: 1,
                family: "cudart".into(),
                paths: vec![long.clone(), long.clone()],
                reason: None,
            }],
            denials: vec![Denial {
                host: "h".into(),
                pid: 1,
                request: long.clone(),
                caller: Some(long.clone()),
                reason: format!("--strict: another major of pinned libcudnn.so.8 ({long})"),
            }],
            diagnoses: vec![Diagnosis::new(
                Kind::Shadowing,
                format!("libcublasLt.so.12 for {long} came from {long} (ld_library_path), although its own DT_RUNPATH holds {long}"),
            )
            .in_process("h", 1)
            .rule("ld_library_path is searched before DT_RUNPATH")],
            requirements: Vec::new(),
            probes: vec![crate::report::summary::Probe {
                host: "h".into(),
                pid: 1,
                request: long.clone(),
                caller: Some("/x/libtorch_cuda_linalg_and_more.so".into()),
                error: None,
            }],
            untraced: vec![crate::report::summary::Untraced {
                host: "h".into(),
                pid: 1,
                exe: long.clone(),
                reason: "it is statically linked: no loader runs in it".into(),
            }],
            pins: vec![PinUse {
                soname: "libcudart.so.12".into(),
                path: long,
                used_in: Default::default(),
                redirected: Default::default(),
            }],
            malformed_lines: 0,
            machine: crate::report::summary::Consulted {
                note: Some(format!("traced on {} (this is here): nothing was consulted", "h".repeat(150))),
                ..Default::default()
            },
        };
        let text = text(&s);
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{} columns: {line}", line.chars().count());
        }
        assert!(text.contains("libcudart.so.12"));
        assert!(text.contains("conflicts"));
        assert!(text.contains("UNUSED"));
    }
}
