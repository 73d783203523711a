//! Every read of the outside world the report makes, behind one value:
//! installers' records (provenance), ELF headers, version probes, the driver,
//! file hashes. Facts seen on another host get nothing of this machine: the
//! [`Machine`] opens this machine only for this machine's processes, and
//! says which hosts it was not consulted for.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::events::FileId;
use super::provenance::{Finder, Origin};
use super::summary::{Consulted, Reads};
use crate::python::site::Site;
use crate::{cuda, elf, probe};

pub struct Machine {
    /// How far this machine may be read for its own processes.
    reads: Reads,
    /// This machine's node name.
    host: String,
    /// The trace's hosts that are not this one: nothing here is about them.
    elsewhere: BTreeSet<String>,
    /// Only when some of the trace is this machine's.
    local: Option<Local>,
}

/// This machine's files, read once each.
struct Local {
    origins: Finder,
    files: elf::ShippedWith,
    /// site-packages directory → its distributions (METADATA, RECORD).
    sites: HashMap<PathBuf, Site>,
}

/// This machine, opened for facts seen on it.
pub struct Here<'a> {
    reads: Reads,
    local: &'a mut Local,
}

impl Machine {
    /// The machine to judge a trace from `hosts` against; `reads` says how
    /// far, for the processes that ran here.
    pub fn for_trace<'a>(hosts: impl IntoIterator<Item = &'a str>, reads: Reads) -> Machine {
        Machine::named(this_host(), hosts, reads)
    }

    fn named<'a>(host: String, hosts: impl IntoIterator<Item = &'a str>, reads: Reads) -> Machine {
        let hosts: BTreeSet<&str> = hosts.into_iter().filter(|h| !h.is_empty()).collect();
        let ours = hosts.is_empty() || hosts.contains(host.as_str());
        let elsewhere = hosts.into_iter().filter(|h| *h != host).map(str::to_owned).collect();
        let local =
            ours.then(|| Local { origins: Finder::default(), files: elf::ShippedWith::new(), sites: HashMap::new() });
        Machine { reads: if ours { reads } else { Reads::Nothing }, host, elsewhere, local }
    }

    /// Whether `host` (a trace's `host` field) is this machine, and this
    /// machine is read for it.
    pub fn is_local(&self, host: &str) -> bool {
        self.is_here(host)
    }

    /// Whether `host` (a trace's `host` field) is this machine.
    fn is_here(&self, host: &str) -> bool {
        self.local.is_some() && (host.is_empty() || host == self.host)
    }

    /// This machine, if `host` is it.
    pub fn on(&mut self, host: &str) -> Option<Here<'_>> {
        self.on_any([host])
    }

    /// This machine, if any of `hosts` is it (a file mapped in processes on
    /// several hosts is read here when one of them ran here).
    pub fn on_any<'a>(&mut self, hosts: impl IntoIterator<Item = &'a str>) -> Option<Here<'_>> {
        let here = hosts.into_iter().any(|h| self.is_here(h));
        let reads = self.reads;
        self.local.as_mut().filter(|_| here).map(|local| Here { reads, local })
    }

    pub fn consulted(&self) -> Consulted {
        let not_consulted: Vec<String> = self.elsewhere.iter().cloned().collect();
        let note = (!not_consulted.is_empty()).then(|| {
            format!(
                "traced on {} (this is {}): for {} processes this machine's files, installers' records and driver were not consulted, and the driver was not judged",
                not_consulted.join(", "),
                if self.host.is_empty() { "an unnamed host" } else { &self.host },
                if self.local.is_some() { "those hosts'" } else { "their" },
            )
        });
        Consulted {
            reads: self.reads,
            host: self.host.clone(),
            driver_judged: self.local.is_some(),
            not_consulted,
            note,
        }
    }
}

impl Here<'_> {
    /// Which installer put the file there, from its own records.
    pub fn origin(&mut self, path: &str) -> Origin {
        self.local.origins.origin(Path::new(path))
    }

    /// Whether the file at `path` now is another than `mapped` (the one a
    /// process mapped there). A file that is gone is not another.
    pub fn is_another_file(&mut self, path: &str, mapped: FileId) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) != (mapped.dev, mapped.ino))
    }

    /// The library's own answer (in a helper process), on a live run only.
    pub fn version_call(&mut self, path: &str) -> Option<(String, String)> {
        (self.reads == Reads::Live).then(|| probe::version_of(Path::new(path)))?
    }

    /// The version of the driver that `libcuda` (a loaded libcuda.so.1) is:
    /// its real file's name, else the kernel module's.
    pub fn driver_version(&mut self, libcuda: &str) -> Option<String> {
        cuda::libcuda_version(Path::new(libcuda)).or_else(cuda::kernel_driver_version)
    }

    /// The Python site (site-packages or dist-packages) at `root`, with its
    /// distributions, read once per site.
    pub fn site(&mut self, root: &Path) -> &Site {
        self.local.sites.entry(root.to_path_buf()).or_insert_with(|| Site::read(root))
    }

    /// ELF headers of this machine's files.
    pub fn elf(&mut self) -> &mut elf::ShippedWith {
        &mut self.local.files
    }
}

/// The site-packages (or dist-packages) directory `path` lies in.
pub fn site_root(path: &Path) -> Option<&Path> {
    path.ancestors()
        .find(|a| matches!(a.file_name().and_then(std::ffi::OsStr::to_str), Some("site-packages" | "dist-packages")))
}

/// This machine's node name, as the audit module writes it in `host`
/// (uname's nodename); empty when it cannot be read.
pub(crate) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_opens_for_its_own_hosts_only() {
        let mut m = Machine::named("a".into(), ["a", "b"], Reads::Files);
        assert!(m.on("a").is_some() && m.on("").is_some());
        assert!(m.on("b").is_none());
        assert!(m.on_any(["b", "a"]).is_some());
        let c = m.consulted();
        assert_eq!((c.reads, c.driver_judged, c.not_consulted), (Reads::Files, true, vec!["b".to_owned()]));

        let mut m = Machine::named("a".into(), ["b"], Reads::Live);
        assert!(m.on("b").is_none() && m.on("").is_none());
        let c = m.consulted();
        assert_eq!((c.reads, c.driver_judged), (Reads::Nothing, false));
        assert!(c.note.unwrap().contains("traced on b (this is a)"));
    }
}
