//! Unix time as an RFC 3339 UTC timestamp (RFC 5424's TIMESTAMP), without a date crate.

/// `secs` (since the Unix epoch) as `YYYY-MM-DDThh:mm:ss.ffffffZ` (microseconds, UTC), the
/// form RFC 5424 §6.2.3 allows. Times before 1970 or past year 9999 are clamped to those ends.
pub fn rfc3339(secs: f64) -> String {
    // 253402300799 = 9999-12-31T23:59:59Z. `as` saturates, and NaN becomes 0.
    let total_us = ((secs * 1e6) as u64).min(253_402_300_799_999_999);
    let (whole, us) = (total_us / 1_000_000, total_us % 1_000_000);
    let (days, rem) = (whole / 86_400, whole % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
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
    use super::rfc3339;

    #[test]
    fn known_instants() {
        // Values from `date -u -d @N +%FT%T`.
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500000Z");
        assert_eq!(rfc3339(1_796_477_075.25), "2026-12-05T13:24:35.250000Z");
        assert_eq!(rfc3339(-5.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(f64::NAN), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1e300), "9999-12-31T23:59:59.999999Z");
    }
}
