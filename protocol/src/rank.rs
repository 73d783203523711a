//! A process's place in a multi-rank job (rank, local rank, world size,
//! node), from the variables the job's launchers set. Pure: the caller
//! passes a lookup of the environment.

/// One launcher's variables: rank, local rank, world size.
struct Family {
    rank: &'static str,
    local_rank: Option<&'static str>,
    world_size: Option<&'static str>,
}

/// Most specific to the process first. When launchers nest, the innermost
/// one started this process and knows its rank; the outer ones' variables
/// are inherited and name the outer task:
/// * torchrun (torch.distributed) sets RANK per worker; under `srun` or
///   `mpirun` it is the innermost launcher, so RANK wins over SLURM_PROCID
///   or OMPI_COMM_WORLD_RANK, which name its agent's task;
/// * MPI implementations next (Open MPI, MVAPICH2), then the process
///   management interfaces they may sit on (PMIx, then PMI as MPICH's Hydra
///   and Intel MPI set it);
/// * Slurm last: `mpirun` inside an allocation inherits the batch step's
///   SLURM_PROCID (0) into every rank.
///
/// The family that gives the rank gives the local rank and the world size
/// too, so that a process never mixes two launchers' numbering.
const FAMILIES: &[Family] = &[
    Family { rank: "RANK", local_rank: Some("LOCAL_RANK"), world_size: Some("WORLD_SIZE") },
    Family {
        rank: "OMPI_COMM_WORLD_RANK",
        local_rank: Some("OMPI_COMM_WORLD_LOCAL_RANK"),
        world_size: Some("OMPI_COMM_WORLD_SIZE"),
    },
    Family {
        rank: "MV2_COMM_WORLD_RANK",
        local_rank: Some("MV2_COMM_WORLD_LOCAL_RANK"),
        world_size: Some("MV2_COMM_WORLD_SIZE"),
    },
    Family { rank: "PMIX_RANK", local_rank: None, world_size: None },
    Family { rank: "PMI_RANK", local_rank: None, world_size: Some("PMI_SIZE") },
    Family { rank: "SLURM_PROCID", local_rank: Some("SLURM_LOCALID"), world_size: Some("SLURM_NTASKS") },
];

/// Slurm's index of the node within the job step.
const NODE: &str = "SLURM_NODEID";

/// Every variable read here, for the recorded environment subset.
pub const VARIABLES: &[&str] = &[
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "MV2_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NTASKS",
    "SLURM_NODEID",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
    pub world_size: Option<u32>,
    pub node: Option<u32>,
}

/// The identity the environment gives; `var` looks a variable up.
/// Values that are not plain decimal numbers are ignored.
pub fn identity<'v>(var: impl Fn(&str) -> Option<&'v [u8]>) -> Identity {
    let num = |name: &str| var(name).and_then(number);
    let node = num(NODE);
    for f in FAMILIES {
        if let Some(rank) = num(f.rank) {
            return Identity {
                rank: Some(rank),
                local_rank: f.local_rank.and_then(num),
                world_size: f.world_size.and_then(num),
                node,
            };
        }
    }
    Identity { node, ..Identity::default() }
}

/// A decimal number that fits in u32: digits only, no sign, no spaces.
fn number(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    u32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(pairs: &[(&str, &str)]) -> Identity {
        identity(|k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_bytes()))
    }

    #[test]
    fn nothing_set_means_nothing_known() {
        assert_eq!(id(&[]), Identity::default());
    }

    #[test]
    fn torchrun_under_srun_is_known_by_torchruns_numbers() {
        let env = [
            ("SLURM_PROCID", "1"),
            ("SLURM_LOCALID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NODEID", "1"),
            ("RANK", "5"),
            ("LOCAL_RANK", "1"),
            ("WORLD_SIZE", "8"),
        ];
        assert_eq!(id(&env), Identity { rank: Some(5), local_rank: Some(1), world_size: Some(8), node: Some(1) });
    }

    #[test]
    fn mpirun_inside_an_allocation_beats_the_inherited_slurm_task() {
        let env = [
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("PMIX_RANK", "3"),
        ];
        assert_eq!(id(&env), Identity { rank: Some(3), local_rank: Some(1), world_size: Some(4), node: None });
    }

    #[test]
    fn each_launcher_alone_is_read() {
        assert_eq!(id(&[("PMI_RANK", "2"), ("PMI_SIZE", "6")]).world_size, Some(6));
        assert_eq!(id(&[("PMIX_RANK", "7")]).rank, Some(7));
        assert_eq!(id(&[("MV2_COMM_WORLD_RANK", "9")]).rank, Some(9));
        let slurm = id(&[("SLURM_PROCID", "4"), ("SLURM_LOCALID", "0"), ("SLURM_NTASKS", "16")]);
        assert_eq!((slurm.rank, slurm.local_rank, slurm.world_size), (Some(4), Some(0), Some(16)));
    }

    #[test]
    fn numbers_from_two_launchers_are_never_mixed() {
        // RANK alone: the world size is torchrun's or unknown, not Slurm's.
        let i = id(&[("RANK", "1"), ("SLURM_NTASKS", "2")]);
        assert_eq!((i.rank, i.world_size), (Some(1), None));
    }

    #[test]
    fn invalid_numbers_are_ignored_and_the_next_launcher_answers() {
        for bad in ["", "-1", "+1", " 1", "1 ", "0x10", "4294967296", "99999999999", "١"] {
            assert_eq!(id(&[("RANK", bad)]).rank, None, "{bad:?}");
            assert_eq!(id(&[("RANK", bad), ("SLURM_PROCID", "3")]).rank, Some(3), "{bad:?}");
        }
        assert_eq!(id(&[("RANK", "4294967295")]).rank, Some(u32::MAX));
        assert_eq!(id(&[("RANK", "0"), ("LOCAL_RANK", "x")]).local_rank, None);
    }
}
