//! Stage 4: the summary as text (fits the terminal it goes to, needs no
//! colour; cut nowhere when it goes to a file or pipe) and as JSON, both
//! from the same value.

use std::fmt::Write;

use super::summary::{Library, Process, Summary};
use crate::error::Error;
use crate::vocab::{basename, Tag};

/// The summary as readers of `--summary-json` and `report --json` get it.
pub fn json(s: &Summary) -> Result<String, Error> {
    serde_json::to_string_pretty(s).map_err(Error::Json)
}

/// The width when a terminal's cannot be read.
const WIDTH: usize = 100;

/// The columns text for descriptor `fd` may use: `COLUMNS` when set, else
/// the terminal's own width; none (nothing is cut) when `fd` is not a
/// terminal, since a file or a pipe has no width and a cut hides exactly
/// what differs.
pub fn width_for(fd: i32) -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()).filter(|&n| n > 0) {
        return Some(n.max(40));
    }
    // SAFETY: isatty and TIOCGWINSZ only read the descriptor's state into
    // a local struct.
    unsafe {
        if libc::isatty(fd) != 1 {
            return None;
        }
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return Some(usize::from(ws.ws_col).max(40));
        }
    }
    Some(WIDTH)
}

/// The summary in 100 columns.
#[cfg(test)]
pub fn text(s: &Summary) -> String {
    text_in(s, Some(WIDTH))
}

/// The summary in `width` columns, or uncut (`None`).
pub fn text_in(s: &Summary, width: Option<usize>) -> String {
    let fit = |text: &str, indent: usize| match width {
        Some(w) => elide_middle(text, w.saturating_sub(indent)),
        None => text.to_owned(),
    };
    let wrap_to = |text: &str, indent: usize| match width {
        Some(w) => wrap(text, w.saturating_sub(indent)),
        None => vec![text.to_owned()],
    };
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
    if s.trace_incomplete {
        let _ = writeln!(out, "trace incomplete: some events could not be written; what follows is true but not all");
    }
    // What differs between ranks comes first: it is what a many-rank job's
    // reader is looking for, and it cannot be seen in any one rank's table.
    if !s.divergences.is_empty() {
        let _ = writeln!(out, "divergences (ranks that loaded other files of one CUDA library):");
        for d in &s.divergences {
            let _ = writeln!(out, "  {}", d.family);
            for line in wrap(&d.message, WIDTH - 4) {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    ranks(s, &mut out);
    if !s.libraries.is_empty() {
        let rows: Vec<[String; 5]> = s.libraries.iter().map(row).collect();
        let header = ["family", "soname", "version", "procs", "loaded"].map(str::to_owned);
        // 2 + 4 gaps of 2 + these = the width (100: the last cap is 41).
        let last = width.map_or(usize::MAX, |w| w.saturating_sub(59).max(10));
        let caps = if width.is_some() { [10, 24, 10, 5, last] } else { [usize::MAX; 5] };
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0).min(caps[c]))
            .collect();
        let line = |r: &[String; 5]| {
            let cells: Vec<String> = (0..5).map(|c| pad(&r[c], widths[c], c == 3)).collect();
            format!("  {}", cells.join("  ")).trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&header).to_uppercase());
        let all = common_dir(s.libraries.iter().map(|l| l.path.as_str()));
        for (lib, r) in s.libraries.iter().zip(&rows) {
            let _ = writeln!(out, "{}", line(r));
            let label = lib.origin.label();
            let from = match width {
                Some(w) if label.chars().count() + 2 + lib.path.chars().count() > w - 4 => {
                    // Too long: cut what the rows share, so that what tells
                    // two files of one name apart (a venv's name) stays.
                    let peers: Vec<&str> = s
                        .libraries
                        .iter()
                        .map(|l| l.path.as_str())
                        .filter(|p| basename(p) == basename(&lib.path))
                        .collect();
                    let budget = w.saturating_sub(4 + label.chars().count() + 2);
                    format!("{label}: {}", elide_shared(&lib.path, &peers, &all, budget))
                }
                _ => format!("{label}: {}", lib.path),
            };
            let _ = writeln!(out, "    {}", fit(&from, 4));
            if lib.replaced {
                let _ = writeln!(out, "    replaced on disk after the job loaded it: the file there now is another");
            }
        }
    }
    if !s.conflicts.is_empty() {
        let _ = writeln!(out, "conflicts (two files of one CUDA library in one process):");
        for c in &s.conflicts {
            let exe = s
                .processes
                .iter()
                .find(|p| (&p.host, p.pid, p.instance) == (&c.host, c.pid, c.instance))
                .and_then(|p| p.exe.as_deref())
                .map(basename)
                .unwrap_or("?");
            let _ = writeln!(out, "  pid {} ({exe}): {}", pid_named(c.pid, c.instance), c.family);
            for p in &c.paths {
                let _ = writeln!(out, "    {}", fit(p, 4));
            }
            if c.paths.len() > 1 && c.paths.iter().all(|p| p == &c.paths[0]) {
                let _ = writeln!(out, "    (one path, two files: it was replaced on disk between the two loads)");
            }
        }
    }
    if !s.diagnoses.is_empty() {
        let _ = writeln!(out, "diagnoses:");
        for d in &s.diagnoses {
            let pid = d.pid.map(|p| format!(" pid {}", pid_named(p, d.instance))).unwrap_or_default();
            let _ = writeln!(out, "  [{}]{pid}", d.kind.as_str());
            match &d.failure {
                Some(f) => {
                    // glibc's words, then the files and the fix each on a
                    // line: a command to copy is never cut.
                    let unsaid = || format!("loading {} failed", f.request.as_deref().unwrap_or("?"));
                    for line in wrap_to(&f.failure.error.clone().unwrap_or_else(unsaid), 4) {
                        let _ = writeln!(out, "    {line}");
                    }
                    for (label, line, cut) in failure_lines(f) {
                        let line = if cut { fit(&line, 6 + label.len()) } else { line };
                        let _ = writeln!(out, "    {label}: {line}");
                    }
                }
                None => {
                    for line in wrap_to(&d.message, 4) {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
            let _ = writeln!(out, "    rule: {}", fit(&d.rule, 10));
        }
    }
    let failed: Vec<&crate::report::summary::Probe> = s.probes.iter().filter(|p| p.is_failure()).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "failed loads (the loader gave up; not loaded):");
        let mut seen = std::collections::BTreeSet::new();
        for p in failed {
            let by = p.caller.as_deref().map(basename).unwrap_or("?");
            let why = p.error.as_deref().or(p.reason.as_ref().map(Tag::as_str)).unwrap_or("failed");
            if seen.insert((p.request.as_str(), by, why)) {
                let line = format!("{} (requested by {by})", p.request);
                let _ = writeln!(out, "  {}", fit(&line, 2));
                for line in wrap_to(why, 4) {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    let probes: Vec<&crate::report::summary::Probe> = s.probes.iter().filter(|p| !p.is_failure()).collect();
    if !probes.is_empty() {
        let _ = writeln!(out, "not found (probes the program may have tolerated):");
        let mut seen = std::collections::BTreeSet::new();
        for p in &probes {
            let by = p.caller.as_deref().map(basename).unwrap_or("?");
            if seen.insert((p.request.as_str(), by)) {
                let n = probes
                    .iter()
                    .filter(|q| q.request == p.request && q.caller.as_deref().map(basename).unwrap_or("?") == by)
                    .count();
                let times = if n > 1 { format!(", {n} times") } else { String::new() };
                let line = format!("{} (requested by {by}{times})", p.request);
                let _ = writeln!(out, "  {}", fit(&line, 2));
            }
        }
    }
    if !s.untraced.is_empty() {
        let _ = writeln!(out, "not traced (started by traced processes):");
        let mut seen = std::collections::BTreeSet::new();
        for u in &s.untraced {
            if seen.insert((u.exe.as_str(), u.reason.as_str())) {
                let _ = writeln!(out, "  {}", fit(&u.exe, 2));
                for line in wrap_to(&u.reason, 4) {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    if !s.denials.is_empty() {
        let _ = writeln!(out, "refused:");
        for d in &s.denials {
            let by = d.caller.as_deref().map(basename).unwrap_or("?");
            // The request on a line of its own: a cut must not take the
            // name of what was refused.
            let _ = writeln!(out, "  pid {} (requested by {by}):", pid_named(d.pid, d.instance));
            let _ = writeln!(out, "    {}", fit(&d.request, 4));
            for line in wrap_to(&d.reason, 4) {
                let _ = writeln!(out, "    {line}");
            }
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
            let _ = writeln!(out, "    {}", fit(&p.path, 4));
        }
    }
    if let Some(note) = &s.machine.note {
        for (i, line) in wrap_to(&format!("note: {note}"), 2).into_iter().enumerate() {
            let _ = writeln!(out, "{}{line}", if i == 0 { "" } else { "  " });
        }
    }
    if s.malformed_lines > 0 {
        let _ = writeln!(out, "note: {} trace lines were not valid events and were skipped", s.malformed_lines);
    }
    out
}

/// The ranks by host, and the processes that started ranks without being
/// one (torchrun's agent): one line per host however many ranks it ran.
fn ranks(s: &Summary, out: &mut String) {
    use std::collections::BTreeMap;
    let procs: Vec<crate::compare::divergence::Proc> = s.processes.iter().map(Process::as_proc).collect();
    let rank_of = crate::compare::divergence::ranks(&procs);
    if rank_of.is_empty() {
        return;
    }
    let mut by_host: BTreeMap<&str, (Vec<i64>, usize)> = BTreeMap::new();
    for r in rank_of.values() {
        let entry = by_host.entry(r.host.as_str()).or_default();
        entry.0.push(r.rank);
        entry.1 += 1;
    }
    let _ = writeln!(out, "ranks by host:");
    for (host, (ranks, procs)) in &by_host {
        let host = if host.is_empty() { "?" } else { host };
        let n = {
            let mut r = ranks.clone();
            r.sort_unstable();
            r.dedup();
            r.len()
        };
        let line = format!(
            "{host}: {} {} ({})",
            if n == 1 { "rank" } else { "ranks" },
            crate::compare::ranges(ranks),
            plural(*procs, "process", "processes")
        );
        let _ = writeln!(out, "  {}", elide_middle(&line, WIDTH - 2));
    }
    // Processes with ranks under them but none of their own.
    let mut parents = Vec::new();
    for p in &s.processes {
        if rank_of.contains_key(&(p.host.clone(), p.pid, p.instance)) {
            continue;
        }
        let child_of_p = |c: &Process| c.ppid == p.pid && c.parent_instance == p.instance;
        let children: Vec<i64> = rank_of
            .iter()
            .filter(|((h, pid, n), _)| {
                *h == p.host
                    && s.processes.iter().any(|c| c.host == *h && c.pid == *pid && c.instance == *n && child_of_p(c))
            })
            .map(|(_, r)| r.rank)
            .collect();
        if !children.is_empty() {
            // An interpreter running a script is named by the script
            // (`torchrun`, not `python3.11`).
            let exe = p.exe.as_deref().map(basename).unwrap_or("?");
            let script = p.argv.get(1).filter(|a| exe.starts_with("python") && !a.starts_with('-'));
            let exe = script.map_or(exe, |s| basename(s));
            parents.push(format!(
                "pid {} ({exe}) on {}: parent of ranks {}",
                pid_named(p.pid, p.instance),
                p.host,
                crate::compare::ranges(&children)
            ));
        }
    }
    for line in parents {
        let _ = writeln!(out, "  {}", elide_middle(&line, WIDTH - 2));
    }
}

/// One line for a rank's culaunch when nothing is wrong in its tree.
pub fn rank_line(s: &Summary, rank: i64) -> String {
    let libs: Vec<String> = s
        .libraries
        .iter()
        .map(|l| {
            let name = l.soname.clone().unwrap_or_else(|| basename(&l.path).to_owned());
            l.version.as_ref().map_or(name.clone(), |v| format!("{name} {v}"))
        })
        .collect();
    let line = format!(
        "culaunch: rank {rank}: {} traced, {} CUDA {}{}",
        plural(s.processes.len(), "process", "processes"),
        libs.len(),
        if libs.len() == 1 { "library" } else { "libraries" },
        if libs.is_empty() { String::new() } else { format!(" ({})", libs.join(", ")) },
    );
    format!("{}\n", elide_middle(&line, WIDTH))
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

/// A pid as processes are named: `123`, or `123#2` for the second process
/// the trace showed under it.
fn pid_named(pid: i64, instance: u32) -> String {
    if instance <= 1 {
        pid.to_string()
    } else {
        format!("{pid}#{instance}")
    }
}

/// A failed load's explanation as labelled lines (label, text, may be cut).
fn failure_lines(f: &crate::rules::FailedLoad) -> Vec<(&'static str, String, bool)> {
    use crate::rules::FailReason;
    let e = &f.explanation;
    let mut out = Vec::new();
    if f.before_main {
        let note = "the process ended before main: glibc's words rebuilt from its program's files";
        out.push(("note", note.to_owned(), true));
    } else if f.failure.reconstructed {
        out.push(("note", "glibc's words rebuilt from the files: the trace does not carry them".to_owned(), true));
    }
    // glibc names the requester of a symbol or version itself.
    if let Some(r) = e
        .requester
        .as_ref()
        .filter(|_| matches!(f.failure.reason, FailReason::MissingDependency | FailReason::WrongClass))
    {
        out.push(("needed by", r.clone(), true));
    }
    if let Some(p) = &e.provider {
        let step = e.provider_search.as_ref().map(|s| format!(" (found by {s})")).unwrap_or_default();
        let label = match f.failure.reason {
            FailReason::WrongClass => "of the wrong class",
            _ => "lacks it",
        };
        out.push((label, format!("{p}{step}"), true));
    }
    match (&e.alternative, &e.fix) {
        (Some(a), Some(fix)) => {
            out.push(("has it", a.clone(), true));
            out.extend(e.found_in.clone().map(|l| ("found in", l, true)));
            out.push(("fix", fix.to_string(), false));
            if let Some(pin) = e.pin.as_ref().filter(|p| *p != fix) {
                out.push(("or", pin.to_string(), false));
            }
        }
        _ => out.push(("found", e.advice.clone(), true)),
    }
    out
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

/// `path` in `width` characters, cutting first the directories it shares
/// with `peers` (the other files of its name): their common prefix (else
/// `all`, the prefix every row shares), then the middle of their common
/// tail; the part that differs is cut last.
fn elide_shared(path: &str, peers: &[&str], all: &str, width: usize) -> String {
    if path.chars().count() <= width {
        return path.to_owned();
    }
    let (prefix, suffix) = if peers.len() > 1 {
        (common_dir(peers.iter().copied()), common_tail(peers))
    } else {
        (all.to_owned(), String::new())
    };
    if prefix.len() + suffix.len() > path.len() || prefix.len() < 2 && suffix.is_empty() {
        return elide_middle(path, width);
    }
    let differs = &path[prefix.len().saturating_sub(1)..path.len() - suffix.len()];
    let head = if prefix.len() > 1 { format!("…{differs}") } else { path[..path.len() - suffix.len()].to_owned() };
    let room = width.saturating_sub(head.chars().count());
    if suffix.chars().count() <= room {
        return format!("{head}{suffix}");
    }
    if room >= basename(&suffix).chars().count() + 4 {
        return format!("{head}{}", elide_middle(&suffix, room));
    }
    elide_middle(&format!("{head}{suffix}"), width)
}

/// The tail (starting at a `/`) that all `paths` share.
fn common_tail(paths: &[&str]) -> String {
    let Some(first) = paths.first() else { return String::new() };
    let mut n = first.len();
    for p in &paths[1..] {
        n = n.min(first.bytes().rev().zip(p.bytes().rev()).take_while(|(a, b)| a == b).count());
    }
    let tail = &first[first.len() - n..];
    tail.find('/').map_or_else(String::new, |i| tail[i..].to_owned())
}

/// The directory prefix (ending in `/`) that all `paths` share.
fn common_dir<'a>(mut paths: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = paths.next() else { return String::new() };
    let mut common = first;
    for p in paths {
        let n = common.bytes().zip(p.bytes()).take_while(|(a, b)| a == b).count();
        common = &common[..n];
    }
    common.rfind('/').map_or_else(String::new, |i| common[..=i].to_owned())
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
            files: Default::default(),
            replaced: false,
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
                rank: None,
                local_rank: None,
                world_size: None,
                ended_before_main: false,
                instance: 1,
                parent_instance: 1,
            }],
            libraries: vec![lib],
            conflicts: vec![Conflict {
                host: "h".into(),
                pid: 1,
                instance: 1,
                family: "cudart".into(),
                paths: vec![long.clone(), long.clone()],
                reason: None,
            }],
            denials: vec![Denial {
                host: "h".into(),
                pid: 1,
                instance: 1,
                request: long.clone(),
                caller: Some(long.clone()),
                reason: format!("--strict: another major of pinned libcudnn.so.8 ({long})"),
            }],
            diagnoses: vec![Diagnosis::new(
                Kind::Shadowing,
                format!("libcublasLt.so.12 for {long} came from {long} (ld_library_path), although its own DT_RUNPATH holds {long}"),
            )
            .in_process("h", 1, 1)
            .rule("ld_library_path is searched before DT_RUNPATH")],
            requirements: Vec::new(),
            probes: vec![crate::report::summary::Probe {
                host: "h".into(),
                pid: 1,
                instance: 1,
                request: long.clone(),
                caller: Some("/x/libtorch_cuda_linalg_and_more.so".into()),
                error: None,
                path: None,
                reason: None,
                symbol: None,
                version: None,
                required_by: None,
                unmapped: Vec::new(),
            }],
            untraced: vec![crate::report::summary::Untraced {
                host: "h".into(),
                pid: 1,
                instance: 1,
                exe: long.clone(),
                reason: "it is statically linked: no loader runs in it".into(),
            }],
            pins: vec![PinUse {
                soname: "libcudart.so.12".into(),
                path: long,
                used_in: Default::default(),
                redirected: Default::default(),
            }],
            divergences: vec![],
            malformed_lines: 0,
            trace_incomplete: true,
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
        assert!(text
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("trace incomplete: some events could not be written")));
    }

    fn cudart_in(venv: &str) -> Library {
        let path = format!(
            "/home/me/.cache/virtualenvs/{venv}/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12"
        );
        Library {
            family: Tag::Known(Family::Cudart),
            soname: Some("libcudart.so.12".into()),
            path,
            version: Some("12.9.79".into()),
            version_source: Some(VersionSource::Pip),
            origin: Origin::Pip {
                package: "nvidia-cuda-runtime-cu12".into(),
                version: "12.9.79".into(),
                record_hash: crate::report::provenance::RecordHash::Matches,
            },
            how: [Tag::Known(How::Dlopen)].into(),
            callers: Default::default(),
            search: Default::default(),
            processes: ["h:1".to_owned()].into(),
            pinned: false,
            files: Default::default(),
            replaced: false,
        }
    }

    #[test]
    fn two_rows_differing_only_in_the_venv_name_keep_it_when_cut_and_are_whole_uncut() {
        let s = Summary {
            libraries: vec![cudart_in("project-alpha-training-env"), cudart_in("project-bravo-training-env")],
            ..Summary::default()
        };
        let rows = |width| -> Vec<String> {
            text_in(&s, width).lines().filter(|l| l.contains("pip ")).map(str::to_owned).collect()
        };
        let cut = rows(Some(100));
        assert_eq!(cut.len(), 2);
        assert!(cut.iter().all(|l| l.chars().count() <= 100), "{cut:?}");
        assert!(
            cut[0].contains("project-alpha-training-env") && cut[1].contains("project-bravo-training-env"),
            "{cut:?}"
        );
        assert!(cut[0].ends_with("/libcudart.so.12"), "{cut:?}");
        let whole = rows(None);
        assert_eq!(whole[0].trim(), format!("pip nvidia-cuda-runtime-cu12: {}", s.libraries[0].path));
        // Wide enough: nothing cut.
        assert_eq!(rows(Some(250)), whole);
    }

    #[test]
    fn refused_and_untraced_lines_are_wrapped_at_spaces_never_cut_inside_a_word() {
        let reason_u =
            "its environment lacks LD_AUDIT or CULAUNCH_AUDIT_TRACE (cleared), so culaunch is not loaded in it";
        let reason_d = "--strict: libcudnn_cnn_infer.so.8 is not allowed by a pin or the lock (culaunch.lock)";
        let s = Summary {
            untraced: vec![crate::report::summary::Untraced {
                host: "h".into(),
                pid: 1,
                instance: 1,
                exe: "/sbin/ldconfig".into(),
                reason: reason_u.into(),
            }],
            denials: vec![Denial {
                host: "h".into(),
                pid: 1,
                instance: 1,
                request: "libcudnn_cnn_infer.so.8".into(),
                caller: Some("/opt/venvs/train/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so".into()),
                reason: reason_d.into(),
            }],
            ..Summary::default()
        };
        let text = text_in(&s, Some(50));
        assert!(text.lines().all(|l| l.chars().count() <= 50), "{text}");
        assert!(!text.contains('…'), "nothing here is longer than a line: {text}");
        // The words of each reason, in order, across its lines.
        let words: Vec<&str> = text.split_whitespace().collect();
        for reason in [reason_u, reason_d] {
            let want: Vec<&str> = reason.split(' ').collect();
            assert!(words.windows(want.len()).any(|w| w == want.as_slice()), "{reason:?} in:\n{text}");
        }
        assert!(text.lines().any(|l| l.trim() == "libcudnn_cnn_infer.so.8"), "the request on its own line: {text}");
    }
}
