//! Divergence across the ranks of one job: for each CUDA library family
//! whose ranks did not all map the same files (path, release, provenance),
//! the majority and the outliers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::ranges;

/// A traced process, as far as rank identity goes.
#[derive(Clone, Debug)]
pub struct Proc {
    pub host: String,
    pub pid: i64,
    /// Which process under this host and pid (a pid reused, or ranks in
    /// pid namespaces of their own): 1, 2, …
    pub instance: u32,
    pub ppid: i64,
    /// Which process under the parent's pid started it.
    pub parent_instance: u32,
    pub rank: Option<i64>,
    pub world_size: Option<i64>,
}

/// One CUDA library file mapped in one process, with what is known of it.
/// Borrowed from the summary: a job of many ranks maps the same few files
/// in every rank.
#[derive(Clone, Debug)]
pub struct Mapped<'a> {
    pub host: &'a str,
    pub pid: i64,
    pub instance: u32,
    pub family: &'a str,
    pub soname: &'a str,
    pub path: &'a str,
    pub version: Option<&'a str>,
    /// The installer, in the summary's words (`pip nvidia-cuda-runtime-cu12`).
    pub provenance: &'a str,
}

/// A process: host, pid, instance (`Proc`).
pub type ProcKey = (String, i64, u32);

/// A rank of the job: the topmost process that carries that rank, with the
/// processes under it that carry the same rank (forked data-loader workers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rank {
    pub host: String,
    pub rank: i64,
    pub pid: i64,
    /// Of the topmost process: two ranks may share a host and pid (each in
    /// a pid namespace of its own).
    pub instance: u32,
}

/// Which processes are ranks. A process whose descendants carry another rank
/// identity (torchrun's agent under srun, say: SLURM_PROCID of its own,
/// RANK of each worker) is their parent, not a rank; a descendant with the
/// same identity belongs to its ancestor's rank. Returns, per (host, pid),
/// the rank it belongs to.
pub fn ranks(procs: &[Proc]) -> HashMap<ProcKey, Rank> {
    let by_key: HashMap<(&str, i64, u32), &Proc> =
        procs.iter().map(|p| ((p.host.as_str(), p.pid, p.instance), p)).collect();
    let parent =
        |p: &Proc| by_key.get(&(p.host.as_str(), p.ppid, p.parent_instance)).copied().filter(|q| q.pid != p.pid);
    let identity = |p: &Proc| p.rank.map(|r| (r, p.world_size));
    // Parents: an ancestor of a process with another identity.
    let mut parents: BTreeSet<(&str, i64, u32)> = BTreeSet::new();
    for p in procs.iter().filter(|p| p.rank.is_some()) {
        let mut at = parent(p);
        let mut hops = 0;
        while let Some(q) = at {
            if identity(q).is_some() && identity(q) != identity(p) {
                parents.insert((q.host.as_str(), q.pid, q.instance));
            }
            hops += 1;
            if hops > procs.len() {
                break; // a ppid cycle (pid reuse): stop.
            }
            at = parent(q);
        }
    }
    let mut out = HashMap::new();
    for p in procs.iter().filter(|p| p.rank.is_some() && !parents.contains(&(p.host.as_str(), p.pid, p.instance))) {
        let mut top = p;
        let mut hops = 0;
        while let Some(q) = parent(top) {
            let parent_of_ranks = parents.contains(&(q.host.as_str(), q.pid, q.instance));
            if identity(q) != identity(p) || parent_of_ranks || hops > procs.len() {
                break;
            }
            top = q;
            hops += 1;
        }
        let rank =
            Rank { host: p.host.clone(), rank: p.rank.unwrap_or_default(), pid: top.pid, instance: top.instance };
        out.insert((p.host.clone(), p.pid, p.instance), rank);
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub family: String,
    /// The majority's SONAME.
    pub soname: String,
    pub majority: Majority,
    pub outliers: Vec<Outlier>,
    /// The same in one line, outliers first.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Majority {
    pub path: String,
    pub version: Option<String>,
    pub origin: String,
    pub ranks: Vec<i64>,
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outlier {
    pub host: String,
    pub rank: i64,
    pub pid: i64,
    pub soname: String,
    pub path: String,
    pub version: Option<String>,
    pub origin: String,
}

/// What one rank mapped of one family: the files, each with its release
/// and installer, sorted.
/// A rank as the comparison sorts them: number, host, pid.
/// Rank, host, and the topmost process's pid and instance.
type RankKey<'a> = (i64, &'a str, i64, u32);

type Variant<'a> = BTreeSet<(&'a str, &'a str, Option<&'a str>, &'a str)>;

/// For each family the ranks disagree on, the majority (most ranks; a tie
/// goes to the files of the lowest rank) and every other rank.
pub fn divergences(procs: &[Proc], mapped: &[Mapped<'_>]) -> Vec<Divergence> {
    let rank_of = ranks(procs);
    let mut seen: BTreeMap<&str, BTreeMap<RankKey<'_>, Variant<'_>>> = BTreeMap::new();
    for m in mapped {
        let Some(r) = rank_of.get(&(m.host.to_owned(), m.pid, m.instance)) else { continue };
        seen.entry(m.family).or_default().entry((r.rank, r.host.as_str(), r.pid, r.instance)).or_default().insert((
            m.soname,
            m.path,
            m.version,
            m.provenance,
        ));
    }
    let mut out = Vec::new();
    for (family, per_rank) in seen {
        let mut variants: Vec<(&Variant<'_>, Vec<RankKey<'_>>)> = Vec::new();
        for (rank, v) in &per_rank {
            match variants.iter_mut().find(|(w, _)| *w == v) {
                Some((_, ranks)) => ranks.push(*rank),
                None => variants.push((v, vec![*rank])),
            }
        }
        if variants.len() < 2 {
            continue;
        }
        // Ranks come sorted, so the first variant with the most ranks holds
        // the lowest of them.
        let top = variants.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
        let Some(at) = variants.iter().position(|(_, r)| r.len() == top) else { continue };
        let (major, major_ranks) = variants.remove(at);
        let Some(first) = major.iter().next() else { continue };
        let majority = Majority {
            path: first.1.to_owned(),
            version: first.2.map(str::to_owned),
            origin: first.3.to_owned(),
            ranks: major_ranks.iter().map(|r| r.0).collect(),
            count: major_ranks.len(),
        };
        let mut outliers = Vec::new();
        let mut clauses = Vec::new();
        for (v, ranks) in &variants {
            let Some(f) = v.iter().next() else { continue };
            for (rank, host, pid, _) in ranks {
                outliers.push(Outlier {
                    host: (*host).to_owned(),
                    rank: *rank,
                    pid: *pid,
                    soname: f.0.to_owned(),
                    path: f.1.to_owned(),
                    version: f.2.map(str::to_owned),
                    origin: f.3.to_owned(),
                });
            }
            let hosts: BTreeSet<&str> = ranks.iter().map(|r| r.1).filter(|h| !h.is_empty()).collect();
            let on = if hosts.is_empty() {
                String::new()
            } else {
                format!(" on {}", hosts.into_iter().collect::<Vec<_>>().join(","))
            };
            clauses.push(format!("{}{on} loaded {}", rank_words(ranks), files_words(v)));
        }
        outliers.sort_by_key(|o| o.rank);
        clauses.push(format!("{} loaded {}", rank_words(&major_ranks), files_words(major)));
        out.push(Divergence {
            family: family.to_owned(),
            soname: first.0.to_owned(),
            majority,
            outliers,
            message: clauses.join("; "),
        });
    }
    out
}

fn rank_words(ranks: &[RankKey<'_>]) -> String {
    let numbers: Vec<i64> = ranks.iter().map(|r| r.0).collect();
    format!("{} {}", if numbers.len() == 1 { "rank" } else { "ranks" }, ranges(&numbers))
}

fn files_words(v: &Variant<'_>) -> String {
    let files: Vec<String> = v
        .iter()
        .map(|(soname, _, version, origin)| {
            let version = version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
            let origin = if origin.is_empty() || *origin == "unknown" { String::new() } else { format!(" ({origin})") };
            format!("{soname}{version}{origin}")
        })
        .collect();
    files.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(host: &str, pid: i64, ppid: i64, rank: Option<i64>, world: Option<i64>) -> Proc {
        Proc { host: host.into(), pid, instance: 1, ppid, parent_instance: 1, rank, world_size: world }
    }

    fn cudart(host: &str, pid: i64, major: u32) -> Mapped<'_> {
        let (soname, path, version, pkg) = match major {
            11 => (
                "libcudart.so.11.0",
                "/venv/nvidia/cuda_runtime/lib/libcudart.so.11.0",
                "11.8.89",
                "pip nvidia-cuda-runtime-cu11",
            ),
            _ => (
                "libcudart.so.12",
                "/venv/nvidia/cuda_runtime/lib/libcudart.so.12",
                "12.9.79",
                "pip nvidia-cuda-runtime-cu12",
            ),
        };
        Mapped { host, pid, instance: 1, family: "cudart", soname, path, version: Some(version), provenance: pkg }
    }

    #[test]
    fn the_rank_with_another_runtime_is_the_outlier_and_the_rest_the_majority() {
        let procs: Vec<Proc> =
            (0..4).map(|r| proc(if r == 2 { "node07" } else { "node01" }, 100 + r, 1, Some(r), Some(4))).collect();
        let mapped: Vec<Mapped> =
            (0..4).map(|r| cudart(&procs[r as usize].host, 100 + r, if r == 2 { 11 } else { 12 })).collect();
        let d = divergences(&procs, &mapped);
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert_eq!((d.family.as_str(), d.soname.as_str()), ("cudart", "libcudart.so.12"));
        assert_eq!(d.majority.ranks, [0, 1, 3]);
        assert_eq!(d.majority.version.as_deref(), Some("12.9.79"));
        assert_eq!(d.outliers.len(), 1);
        assert_eq!((d.outliers[0].rank, d.outliers[0].pid, d.outliers[0].host.as_str()), (2, 102, "node07"));
        assert_eq!(
            d.message,
            "rank 2 on node07 loaded libcudart.so.11.0 11.8.89 (pip nvidia-cuda-runtime-cu11); \
             ranks 0,1,3 loaded libcudart.so.12 12.9.79 (pip nvidia-cuda-runtime-cu12)"
        );
    }

    #[test]
    fn ranks_that_agree_give_no_divergence() {
        let procs: Vec<Proc> = (0..3).map(|r| proc("h", 10 + r, 1, Some(r), Some(3))).collect();
        let mapped: Vec<Mapped> = (0..3).map(|r| cudart("h", 10 + r, 12)).collect();
        assert!(divergences(&procs, &mapped).is_empty());
    }

    #[test]
    fn the_same_file_of_another_release_or_installer_diverges() {
        let procs: Vec<Proc> = (0..3).map(|r| proc("h", 10 + r, 1, Some(r), Some(3))).collect();
        let mut mapped: Vec<Mapped> = (0..3).map(|r| cudart("h", 10 + r, 12)).collect();
        mapped[1].version = Some("12.8.90");
        let d = divergences(&procs, &mapped);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].outliers[0].rank, 1);
        mapped[1].version = Some("12.9.79");
        mapped[0].provenance = "conda cuda-cudart";
        assert_eq!(divergences(&procs, &mapped)[0].outliers[0].rank, 0);
    }

    #[test]
    fn torchrun_agent_is_the_parent_of_its_workers_not_a_rank() {
        // The agent under srun carries SLURM_PROCID 0 of 1; its workers RANK 0..2 of 3.
        let mut procs = vec![proc("n", 50, 1, Some(0), Some(1))];
        procs.extend((0..3).map(|r| proc("n", 60 + r, 50, Some(r), Some(3))));
        // A data-loader worker forked by rank 1 belongs to rank 1.
        procs.push(proc("n", 70, 61, Some(1), Some(3)));
        let r = ranks(&procs);
        assert!(!r.contains_key(&("n".to_owned(), 50, 1)));
        assert_eq!(r[&("n".to_owned(), 61, 1)], Rank { host: "n".into(), rank: 1, pid: 61, instance: 1 });
        assert_eq!(r[&("n".to_owned(), 70, 1)], Rank { host: "n".into(), rank: 1, pid: 61, instance: 1 });
        // The agent's own runtime is not compared with the workers'.
        let mut mapped = vec![cudart("n", 50, 11)];
        mapped.extend((0..3).map(|i| cudart("n", 60 + i, 12)));
        assert!(divergences(&procs, &mapped).is_empty());
    }

    #[test]
    fn many_outliers_on_one_host_are_one_clause_with_ranges() {
        let procs: Vec<Proc> = (0..64)
            .map(|r| proc(if (32..36).contains(&r) { "node07" } else { "node01" }, 1000 + r, 1, Some(r), Some(64)))
            .collect();
        let mapped: Vec<Mapped> =
            procs.iter().map(|p| cudart(&p.host, p.pid, if p.host == "node07" { 11 } else { 12 })).collect();
        let d = &divergences(&procs, &mapped)[0];
        assert_eq!(d.outliers.len(), 4);
        assert!(d.message.starts_with("ranks 32-35 on node07 loaded libcudart.so.11.0"), "{}", d.message);
        assert!(d.message.contains("ranks 0-31,36-63 loaded libcudart.so.12"), "{}", d.message);
    }
}
