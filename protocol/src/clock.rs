//! RFC 3339 timestamps without allocation or time-zone files, for every
//! writer of trace events.

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, always 27 bytes.
pub fn rfc3339_micros(epoch_ns: u64) -> [u8; 27] {
    let secs = epoch_ns / 1_000_000_000;
    let micros = (epoch_ns % 1_000_000_000) / 1_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    put(&mut out[0..4], y as u64);
    put(&mut out[5..7], m as u64);
    put(&mut out[8..10], d as u64);
    put(&mut out[11..13], sod / 3600);
    put(&mut out[14..16], sod / 60 % 60);
    put(&mut out[17..19], sod % 60);
    put(&mut out[20..26], micros);
    out
}

fn put(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(&rfc3339_micros(0), b"1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.789012Z, a leap day.
        assert_eq!(&rfc3339_micros(1_709_210_096_789_012_345), b"2024-02-29T12:34:56.789012Z");
        // 2026-11-29T23:59:59.999999Z
        assert_eq!(&rfc3339_micros(1_795_996_799_999_999_000), b"2026-11-29T23:59:59.999999Z");
    }
}
