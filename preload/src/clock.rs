//! The clocks events are stamped with.

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub fn now_realtime_ns() -> u64 {
    read(libc::CLOCK_REALTIME)
}

/// Nanoseconds on a clock that never jumps, for durations.
pub fn now_monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; clock_gettime cannot fail for these clocks.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec.max(0) as u64)
}

/// The formatting is the protocol's, shared with the launcher.
pub use culaunch_protocol::clock::rfc3339_micros;
