//! The build date for `--version`: seconds since the Unix epoch (the clock, or
//! `SOURCE_DATE_EPOCH` for reproducible builds) → `YYYY-MM-DD` in UTC. Used by
//! build.rs (which includes this file) and unit-tested here; the crate itself
//! only sees the result, as `SCE_BUILD_DATE`.

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn utc_date(unix_seconds: i64) -> String {
    let (y, m, d) = civil_from_days(unix_seconds.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01,
/// after Howard Hinnant's `civil_from_days`: shift the year to start in March so
/// the leap day is the last day of the year, then split into 400-year eras.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_1970_01_01() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(86_399), "1970-01-01");
        assert_eq!(utc_date(86_400), "1970-01-02");
    }

    #[test]
    fn leap_days_and_century_rules() {
        // 2000 is a leap year (divisible by 400), 2100 is not (by 100 only).
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(951_868_800), "2000-03-01");
        assert_eq!(utc_date(4_107_456_000), "2100-02-28");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01");
        assert_eq!(utc_date(1_709_164_800), "2024-02-29");
    }

    #[test]
    fn year_ends_and_times_before_the_epoch() {
        assert_eq!(utc_date(1_767_225_599), "2025-12-31");
        assert_eq!(utc_date(1_767_225_600), "2026-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
    }

    #[test]
    fn agrees_with_gnu_date_over_four_centuries() {
        // Every 97 days and an hour from 1900 to 2300, against `date -u` (one
        // `date -f` call reads them all).
        let times: Vec<i64> = (-2_208_988_800i64..10_413_792_000)
            .step_by(97 * 86_400 + 3_607)
            .collect();
        let input: String = times.iter().map(|t| format!("@{t}\n")).collect();
        let dir = std::env::temp_dir().join(format!("sce-build-date-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("times");
        std::fs::write(&file, input).unwrap();
        let out = std::process::Command::new("date")
            .args(["-u", "+%F", "-f"])
            .arg(&file)
            .output()
            .expect("GNU date runs");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let ours: Vec<String> = times.iter().map(|&t| utc_date(t)).collect();
        assert_eq!(ours, expected);
    }
}
