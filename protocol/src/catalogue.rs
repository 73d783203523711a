//! The CUDA family: which shared objects belong to it.
//!
//! One table, matched on the library's stem (its name up to `.so`, without
//! the hash a wheel's vendored copy carries), so that `libcudart.so.12`,
//! `libcudart.so.12.9.79`, `libcudart.so` and `libcudart-d0da41ae.so.11.0`
//! are all `cudart`. Extend [`MEMBERS`]; nothing else needs to change.

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
/// (`libcudart.so.12.9.79` → `libcudart`), without a wheel's hash
/// (`libcudart-d0da41ae.so.11.0` → `libcudart`, see [`without_hash`]). A
/// path is reduced to its last component first. Names without `.so` are
/// their own stem.
pub fn stem(name: &[u8]) -> &[u8] {
    let base = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    // The first ".so" that ends the name or is followed by a version dot.
    let ends_soname = |i: usize| base[i..].starts_with(b".so") && matches!(base.get(i + 3), None | Some(b'.'));
    match (0..base.len()).find(|&i| ends_soname(i)) {
        Some(i) => without_hash(&base[..i]),
        None => base,
    }
}

/// Length of the hash auditwheel puts in a vendored copy's name (the first
/// eight hex digits of its SHA-256).
const HASH_LEN: usize = 8;

/// `stem` without a trailing `-` and [`HASH_LEN`] lowercase hex digits:
/// `auditwheel repair` renames each library it copies into a wheel (and
/// sets its SONAME) to `libcudart-d0da41ae.so.11.0`, as PyTorch's own
/// builds name the CUDA libraries they bundle. The copy is still cudart.
fn without_hash(stem: &[u8]) -> &[u8] {
    match stem.len().checked_sub(HASH_LEN + 1) {
        Some(cut) if cut > 0 && is_hash(&stem[cut..]) => &stem[..cut],
        _ => stem,
    }
}

/// `-d0da41ae`.
fn is_hash(s: &[u8]) -> bool {
    s.len() == HASH_LEN + 1 && s[0] == b'-' && s[1..].iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What follows a stem in a name, with a wheel's hash before `.so` left out:
/// `-d0da41ae.so.11.0` → `.so.11.0`.
fn after_hash(rest: &[u8]) -> &[u8] {
    match rest.get(..HASH_LEN + 1) {
        Some(hash) if is_hash(hash) && rest[HASH_LEN + 1..].starts_with(b".so") => &rest[HASH_LEN + 1..],
        _ => rest,
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
    /// A wheel's vendored copy of the same major under a hashed name,
    /// `libcudart-d0da41ae.so.12` (or the pin is such a copy, and this is
    /// the plain name).
    Vendored,
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
    if stem(base) != stem_of_pin || !base.starts_with(stem_of_pin) || !pin_soname.starts_with(stem_of_pin) {
        return PinMatch::Unrelated;
    }
    // Both names from the stem on, a hash before `.so` left out: `.so.12`.
    let rest = after_hash(&base[stem_of_pin.len()..]);
    let pin_rest = after_hash(&pin_soname[stem_of_pin.len()..]);
    if base == pin_soname {
        PinMatch::Soname
    } else if rest == pin_rest {
        PinMatch::Vendored
    } else if rest == b".so" {
        PinMatch::DevName
    } else if rest.starts_with(pin_rest) && rest.get(pin_rest.len()) == Some(&b'.') {
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
    fn stem_drops_the_hash_of_a_vendored_copy() {
        // Names PyTorch's and auditwheel's wheels give the CUDA libraries
        // they bundle.
        assert_eq!(stem(b"libcudart-d0da41ae.so.11.0"), b"libcudart");
        assert_eq!(stem(b"/t/torch/lib/libcublasLt-b6d14a74.so.11"), b"libcublasLt");
        assert_eq!(stem(b"libnvrtc-builtins-4730a239.so.11.7"), b"libnvrtc-builtins");
        assert_eq!(stem(b"libnvToolsExt-847d78f2.so.1"), b"libnvToolsExt");
        // Not a hash: uppercase, too short or too long, or nothing before.
        assert_eq!(stem(b"libfoo-D0DA41AE.so"), b"libfoo-D0DA41AE");
        assert_eq!(stem(b"libfoo-d0da41a.so"), b"libfoo-d0da41a");
        assert_eq!(stem(b"libfoo-d0da41aee.so"), b"libfoo-d0da41aee");
        assert_eq!(stem(b"-d0da41ae.so"), b"-d0da41ae");
        assert_eq!(stem(b"libnvrtc-builtins.so.12"), b"libnvrtc-builtins");
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
            (b"libcudart-d0da41ae.so.11.0", Some("cudart")),
            (b"libcudnn_ops_infer-ab12cd34.so.8", Some("cudnn")),
            (b"libc-0123abcd.so.6", None),
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

    #[test]
    fn a_vendored_copy_relates_to_a_pin_by_its_major() {
        use PinMatch::*;
        let pin = b"libcudart.so.12";
        assert_eq!(pin_match(b"libcudart-d0da41ae.so.12", pin), Vendored);
        assert_eq!(pin_match(b"/w/torch/lib/libcudart-d0da41ae.so.12", pin), Vendored);
        assert_eq!(pin_match(b"libcudart-d0da41ae.so.12.4.127", pin), FullVersion);
        assert_eq!(pin_match(b"libcudart-d0da41ae.so", pin), DevName);
        assert_eq!(pin_match(b"libcudart-d0da41ae.so.11.0", pin), OtherMajor);
        assert_eq!(pin_match(b"libcublasLt-d0da41ae.so.12", b"libcublas.so.12"), Unrelated);
        // The pin itself may be the vendored copy.
        let hashed = b"libcudart-d0da41ae.so.11.0";
        assert_eq!(pin_match(b"libcudart-d0da41ae.so.11.0", hashed), Soname);
        assert_eq!(pin_match(b"libcudart.so.11.0", hashed), Vendored);
        assert_eq!(pin_match(b"libcudart-12345678.so.11.0", hashed), Vendored);
        assert_eq!(pin_match(b"libcudart.so.12", hashed), OtherMajor);
    }
}
