//! Comparisons between runs and between the ranks of one run, as pure
//! functions over small input types of their own: [`divergence`] across the
//! ranks of a job, [`diff`] between two runs. The report builds their inputs
//! from its facts; only [`command`] reads files.

pub mod command;
pub mod diff;
pub mod divergence;

/// Rank numbers as short runs: `0-31,33-63`; runs of two stay a list
/// (`0,1,3`), as people write them.
pub fn ranges(ranks: &[i64]) -> String {
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        match j - i {
            0 => parts.push(sorted[i].to_string()),
            1 => parts.extend([sorted[i].to_string(), sorted[j].to_string()]),
            _ => parts.push(format!("{}-{}", sorted[i], sorted[j])),
        }
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_lists_compress_runs_of_three_or_more() {
        assert_eq!(ranges(&[3, 1, 0]), "0,1,3");
        assert_eq!(ranges(&(0..64).filter(|r| *r != 32).collect::<Vec<_>>()), "0-31,33-63");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[7, 7, 8, 9]), "7-9");
    }
}

/// A process's place in a multi-rank job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub rank: Option<i64>,
    pub local_rank: Option<i64>,
    pub world_size: Option<i64>,
}

/// Each launcher's variables: rank, local rank, world size. The first
/// launcher whose rank variable is set wins, so torchrun's RANK (set for
/// its workers) comes before the SLURM_PROCID of the srun task around it.
const LAUNCHERS: &[(&str, Option<&str>, Option<&str>)] = &[
    ("RANK", Some("LOCAL_RANK"), Some("WORLD_SIZE")),
    ("OMPI_COMM_WORLD_RANK", Some("OMPI_COMM_WORLD_LOCAL_RANK"), Some("OMPI_COMM_WORLD_SIZE")),
    ("PMIX_RANK", None, None),
    ("PMI_RANK", None, Some("PMI_SIZE")),
    ("SLURM_PROCID", Some("SLURM_LOCALID"), Some("SLURM_NTASKS")),
    ("MV2_COMM_WORLD_RANK", Some("MV2_COMM_WORLD_LOCAL_RANK"), Some("MV2_COMM_WORLD_SIZE")),
];

/// The rank identity the environment `get` describes.
pub fn identity(get: impl Fn(&str) -> Option<String>) -> Identity {
    let num = |name: Option<&str>| name.and_then(&get).and_then(|v| v.trim().parse::<i64>().ok());
    for (rank, local, size) in LAUNCHERS {
        if let Some(r) = num(Some(rank)) {
            return Identity { rank: Some(r), local_rank: num(*local), world_size: num(*size) };
        }
    }
    Identity::default()
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn the_first_launcher_with_a_rank_names_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let i = identity(env(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "2"),
        ]));
        assert_eq!(i, Identity { rank: Some(2), local_rank: Some(2), world_size: Some(4) });
        let i = identity(env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"), ("RANK", "5"), ("WORLD_SIZE", "8")]));
        assert_eq!((i.rank, i.world_size), (Some(5), Some(8)));
        assert_eq!(identity(env(&[("PMI_RANK", "x")])), Identity::default());
        assert_eq!(identity(env(&[("MV2_COMM_WORLD_RANK", "7")])).rank, Some(7));
    }
}
