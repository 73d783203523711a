//! The CUDA family: which shared objects belong to it.
//!
//! One table, matched on the library's stem (its name up to `.so`), so that
//! `libcudart.so.12`, `libcudart.so.12.9.79` and `libcudart.so` are all
//! `cudart`. Extend [`MEMBERS`]; nothing else needs to change.

/// `(stem, family)`. A stem ending in `*` matches any stem with that prefix.
pub const MEMBERS: &[(&str, &str)] = &[
    ("libcudart", "cudart"),
    ("libcuda", "cuda"),
    ("libcublas", "cublas"),
    ("libcublasLt", "cublas"),
    ("libnvblas", "cublas"),
    ("libcudnn", "cudnn"),
    ("libcudnn_*", "cudnn"),
    ("libcufft", "cufft"),
    ("libcufftw", "cufft"),
    ("libcurand", "curand"),
    ("libcusolver", "cusolver"),
    ("libcusolverMg", "cusolver"),
    ("libcusparse", "cusparse"),
    ("libcusparseLt", "cusparselt"),
    ("libnccl", "nccl"),
    ("libnvrtc", "nvrtc"),
    ("libnvrtc-builtins", "nvrtc"),
    ("libnvJitLink", "nvjitlink"),
    ("libcupti", "cupti"),
    ("libnvToolsExt", "nvtx"),
    ("libnvtx3interop", "nvtx"),
    ("libnvidia-ml", "nvml"),
    ("libcufile", "cufile"),
    ("libcufile_rdma", "cufile"),
    ("libnvshmem*", "nvshmem"),
    ("libnpp*", "npp"),
    ("libnvjpeg", "nvjpeg"),
    ("libcutensor", "cutensor"),
    ("libcutensorMg", "cutensor"),
    ("libnvinfer", "tensorrt"),
    ("libnvinfer_plugin", "tensorrt"),
    ("libnvonnxparser", "tensorrt"),
];

/// Families whose members must all come from one release: cuBLAS with
/// cuBLASLt, every cuDNN sub-library, nvrtc with nvrtc-builtins, the cuFFT,
/// cuSOLVER and NPP libraries among themselves, TensorRT's parts.
pub const SAME_RELEASE: &[&str] = &["cublas", "cudnn", "nvrtc", "cufft", "cusolver", "npp", "tensorrt", "cufile"];

/// The stem of a library file name or SONAME: the part before `.so`
/// (`libcudart.so.12.9.79` → `libcudart`). A path is reduced to its last
/// component first. Names without `.so` are their own stem.
pub fn stem(name: &[u8]) -> &[u8] {
    let base = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    // The first ".so" that ends the name or is followed by a version dot.
    let ends_soname = |i: usize| base[i..].starts_with(b".so") && matches!(base.get(i + 3), None | Some(b'.'));
    match (0..base.len()).find(|&i| ends_soname(i)) {
        Some(i) => &base[..i],
        None => base,
    }
}

/// The CUDA family of a library name, SONAME or path, if it has one.
pub fn family(name: &[u8]) -> Option<&'static str> {
    let stem = stem(name);
    MEMBERS.iter().find_map(|&(member, family)| {
        let hit = match member.strip_suffix('*') {
            Some(prefix) => stem.starts_with(prefix.as_bytes()) && stem.len() > prefix.len(),
            None => stem == member.as_bytes(),
        };
        hit.then_some(family)
    })
}

/// CUDA families that `--strict` leaves alone unless pinned: the driver and
/// NVML come with the machine, not with the job.
pub const STRICT_EXEMPT: &[&str] = &["cuda", "nvml"];

/// How a requested library name relates to a pinned SONAME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinMatch {
    /// `libcudart.so.12` for pin `libcudart.so.12`.
    Soname,
    /// The development name `libcudart.so`.
    DevName,
    /// A full-version name, `libcudart.so.12.9.79`.
    FullVersion,
    /// Another ABI major of the same library, `libcudart.so.11.0`: never
    /// redirected across the ABI break.
    OtherMajor,
    Unrelated,
}

/// Relates the last path component of `request` to `pin_soname`.
pub fn pin_match(request: &[u8], pin_soname: &[u8]) -> PinMatch {
    let base = match request.iter().rposition(|&b| b == b'/') {
        Some(i) => &request[i + 1..],
        None => request,
    };
    let stem_of_pin = stem(pin_soname);
    if stem(base) != stem_of_pin || !base.starts_with(stem_of_pin) {
        return PinMatch::Unrelated;
    }
    let rest = &base[stem_of_pin.len()..];
    if base == pin_soname {
        PinMatch::Soname
    } else if rest == b".so" {
        PinMatch::DevName
    } else if base.starts_with(pin_soname) && base.get(pin_soname.len()) == Some(&b'.') {
        PinMatch::FullVersion
    } else if rest.starts_with(b".so.") {
        PinMatch::OtherMajor
    } else {
        PinMatch::Unrelated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_drops_directory_and_version() {
        assert_eq!(stem(b"/x/y/libcudart.so.12.9.79"), b"libcudart");
        assert_eq!(stem(b"libcudart.so"), b"libcudart");
        assert_eq!(stem(b"libnvrtc-builtins.so.12.4"), b"libnvrtc-builtins");
        assert_eq!(stem(b"libfoo.something"), b"libfoo.something");
        // ".so" inside a stem is not the suffix.
        assert_eq!(stem(b"libx.socket.so.1"), b"libx.socket");
    }

    #[test]
    fn family_recognises_real_sonames() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"libcudart.so.11.0", Some("cudart")),
            (b"libcudart.so.12", Some("cudart")),
            (b"libcuda.so.1", Some("cuda")),
            (b"libcublasLt.so.12", Some("cublas")),
            (b"libcudnn.so.9", Some("cudnn")),
            (b"libcudnn_ops.so.9", Some("cudnn")),
            (b"libcudnn_ops_infer.so.8", Some("cudnn")),
            (b"libnvrtc-builtins.so.12.9", Some("nvrtc")),
            (b"libnccl.so.2", Some("nccl")),
            (b"libnppial.so.12", Some("npp")),
            (b"libnvidia-ml.so.1", Some("nvml")),
            (b"libc.so.6", None),
            (b"libcudax.so", None),
            (b"libnpp", None),
        ];
        for (name, want) in cases {
            assert_eq!(family(name), *want, "{}", core::str::from_utf8(name).unwrap_or("?"));
        }
    }

    #[test]
    fn requests_relate_to_a_pin_by_name() {
        use PinMatch::*;
        let pin = b"libcudart.so.12";
        let cases: &[(&[u8], PinMatch)] = &[
            (b"libcudart.so.12", Soname),
            (b"/w/nvidia/cuda_runtime/lib/libcudart.so.12", Soname),
            (b"libcudart.so", DevName),
            (b"libcudart.so.12.9.79", FullVersion),
            (b"libcudart.so.11.0", OtherMajor),
            (b"libcudart.so.120", OtherMajor),
            (b"libcudart_static.a", Unrelated),
            (b"libcublas.so.12", Unrelated),
            (b"libcudart.so.12x", OtherMajor),
        ];
        for (req, want) in cases {
            assert_eq!(pin_match(req, pin), *want, "{}", core::str::from_utf8(req).unwrap_or("?"));
        }
        assert_eq!(pin_match(b"libcudnn_ops.so.9", b"libcudnn.so.9"), Unrelated);
        assert_eq!(pin_match(b"libcudnn.so.8", b"libcudnn.so.9"), OtherMajor);
    }
}
