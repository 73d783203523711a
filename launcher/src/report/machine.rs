//! Every read of the outside world the report makes, behind one value:
//! installers' records (provenance), ELF headers, canonical paths, version
//! probes, the driver, file hashes. A trace from another host gets a
//! machine that reads nothing local and says so, so that no finding about
//! it is really about this machine.

use std::collections::BTreeSet;
use std::path::Path;

use super::provenance::{Finder, Origin};
use super::summary::{Consulted, Reads};
use crate::{cuda, elf, probe};

pub struct Machine {
    reads: Reads,
    host: String,
    /// The hosts the trace came from that are not this one.
    elsewhere: BTreeSet<String>,
    local: Option<Local>,
}

/// This machine's files, read once each.
struct Local {
    origins: Finder,
    files: elf::ShippedWith,
}

impl Machine {
    /// The machine to judge a trace from `hosts` against: this one when every
    /// host is this one (`reads` says how far), else none.
    pub fn for_trace<'a>(hosts: impl IntoIterator<Item = &'a str>, reads: Reads) -> Machine {
        let host = this_host();
        let elsewhere: BTreeSet<String> = hosts.into_iter().filter(|h| *h != host).map(str::to_owned).collect();
        let reads = if elsewhere.is_empty() { reads } else { Reads::Nothing };
        let local =
            (reads != Reads::Nothing).then(|| Local { origins: Finder::default(), files: elf::ShippedWith::new() });
        Machine { reads, host, elsewhere, local }
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Which installer put the file there, from its own records.
    pub fn origin(&mut self, path: &str) -> Origin {
        match &mut self.local {
            Some(l) => l.origins.origin(Path::new(path)),
            None => Origin::Unknown,
        }
    }

    /// The library's own answer (in a helper process), on a live run only.
    pub fn version_call(&mut self, path: &str) -> Option<(String, String)> {
        (self.reads == Reads::Live).then(|| probe::version_of(Path::new(path)))?
    }

    /// The version of the driver that `libcuda` (a loaded libcuda.so.1) is:
    /// its real file's name, else the kernel module's.
    pub fn driver_version(&mut self, libcuda: &str) -> Option<String> {
        self.local.as_ref()?;
        cuda::libcuda_version(Path::new(libcuda)).or_else(cuda::kernel_driver_version)
    }

    /// ELF headers of this machine's files.
    pub fn elf(&mut self) -> Option<&mut elf::ShippedWith> {
        self.local.as_mut().map(|l| &mut l.files)
    }

    pub fn consulted(&self) -> Consulted {
        let note = (!self.is_local()).then(|| {
            let hosts: Vec<&str> = self.elsewhere.iter().map(String::as_str).collect();
            format!(
                "traced on {} (this is {}): this machine's files, installers' records and driver were not consulted, and the driver was not judged",
                hosts.join(", "),
                if self.host.is_empty() { "an unnamed host" } else { &self.host }
            )
        });
        Consulted { reads: self.reads, host: self.host.clone(), driver_judged: self.is_local(), note }
    }
}

/// This machine's node name, as the audit module writes it in `host`
/// (uname's nodename); empty when it cannot be read.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}
