//! RFC 3339 timestamps to and from UTC nanoseconds since the Unix epoch,
//! for `--since` / `--until` and the UTC column of `--tables`.
//!
//! Hand-written (Howard Hinnant's days-from-civil) rather than a date crate:
//! the query needs exactly these two conversions, strictly, with errors
//! that say what is wrong. A timestamp must carry its offset (`Z` or
//! `±HH:MM`): a bare local time would mean something else on every host.

/// The nanoseconds since the Unix epoch (UTC) of an RFC 3339 date-time such
/// as `2026-12-03T14:00:00Z` or `2026-12-03T15:00:00.5+01:00`.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let fail = |what: &str| {
        format!("`{text}` is not an RFC 3339 timestamp ({what}); write e.g. 2026-12-03T14:00:00Z or 2026-12-03T14:00:00.250+01:00")
    };
    let bytes = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = bytes.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |index: usize, expected: &[u8]| bytes.get(index).is_some_and(|b| expected.contains(b));
    let (Some(year), Some(month), Some(day)) = (digits(0, 4), digits(5, 2), digits(8, 2)) else {
        return Err(fail("the date must be YYYY-MM-DD"));
    };
    if !(at(4, b"-") && at(7, b"-")) {
        return Err(fail("the date must be YYYY-MM-DD"));
    }
    if !at(10, b"Tt ") {
        return Err(fail("a time must follow the date, after `T`"));
    }
    let (Some(hour), Some(minute), Some(second)) = (digits(11, 2), digits(14, 2), digits(17, 2)) else {
        return Err(fail("the time must be HH:MM:SS"));
    };
    if !(at(13, b":") && at(16, b":")) {
        return Err(fail("the time must be HH:MM:SS"));
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(fail("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("no such time of day (leap seconds are not supported)"));
    }
    let mut index = 19;
    let mut nanos = 0;
    if at(index, b".") {
        let fraction: Vec<u8> = bytes[index + 1..].iter().copied().take_while(u8::is_ascii_digit).collect();
        if fraction.is_empty() {
            return Err(fail("no digits after the decimal point"));
        }
        if fraction.len() > 9 {
            return Err(fail("more than nanosecond precision"));
        }
        nanos = fraction.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')) * 10_i64.pow(9 - fraction.len() as u32);
        index += 1 + fraction.len();
    }
    let offset_secs = match bytes.get(index) {
        Some(b'Z' | b'z') if bytes.len() == index + 1 => 0,
        Some(sign @ (b'+' | b'-')) if bytes.len() == index + 6 && at(index + 3, b":") => {
            let (Some(hours), Some(minutes)) = (digits(index + 1, 2), digits(index + 4, 2)) else {
                return Err(fail("the offset must be Z or ±HH:MM"));
            };
            if hours > 23 || minutes > 59 {
                return Err(fail("no such offset"));
            }
            let secs = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        None => return Err(fail("no offset: end it with Z for UTC, or ±HH:MM")),
        Some(_) => return Err(fail("the offset must be Z or ±HH:MM, and nothing may follow it")),
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    i64::try_from(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
        .map_err(|_| fail("outside the years 1677 to 2262 that nanoseconds since 1970 can hold"))
}

/// `ns` (nanoseconds since the Unix epoch) as RFC 3339 in UTC with all nine
/// fractional digits, e.g. `2026-12-03T14:00:00.000000001Z`.
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_known_epoch_nanoseconds() {
        let check = |text: &str, expected: i64| assert_eq!(parse_rfc3339(text), Ok(expected), "{text}");
        check("1970-01-01T00:00:00Z", 0);
        // `date -u -d 2026-12-03T14:00:00Z +%s` = 1796306400
        check("2026-12-03T14:00:00Z", 1_796_306_400_000_000_000);
        check("2026-12-03t14:00:00z", 1_796_306_400_000_000_000);
        check("2026-12-03 14:00:00Z", 1_796_306_400_000_000_000);
        check("2026-12-03T15:30:00+01:30", 1_796_306_400_000_000_000);
        check("2026-12-03T09:00:00-05:00", 1_796_306_400_000_000_000);
        check("2026-12-03T14:00:00.5Z", 1_796_306_400_500_000_000);
        check("2026-12-03T14:00:00.000000001Z", 1_796_306_400_000_000_001);
        check("2024-02-29T00:00:00Z", 1_709_164_800_000_000_000);
        check("1969-12-31T23:59:59.999999999Z", -1);
        check("2262-04-11T23:47:16.854775807Z", i64::MAX);
    }

    #[test]
    fn malformed_timestamps_say_what_is_wrong() {
        let check = |text: &str, expected: &str| {
            let error = parse_rfc3339(text).expect_err(text);
            assert!(error.contains(expected) && error.contains("2026-12-03T14:00:00Z"), "{text}: {error}");
        };
        check("2026-12-03T14:00:00", "no offset");
        check("2026-12-03", "a time must follow the date");
        check("2026-12-3T14:00:00Z", "YYYY-MM-DD");
        check("2026-13-03T14:00:00Z", "no such date");
        check("2025-02-29T14:00:00Z", "no such date");
        check("2026-12-03T24:00:00Z", "no such time of day");
        check("2026-12-03T14:00:60Z", "leap seconds");
        check("2026-12-03T14:00:00.Z", "no digits after the decimal point");
        check("2026-12-03T14:00:00.0000000001Z", "more than nanosecond precision");
        check("2026-12-03T14:00:00+0100", "±HH:MM");
        check("2026-12-03T14:00:00Z trailing", "nothing may follow");
        check("2300-01-01T00:00:00Z", "1677 to 2262");
        check("tomorrow", "YYYY-MM-DD");
        check("", "YYYY-MM-DD");
    }

    #[test]
    fn formatting_is_the_inverse_of_parsing() {
        for ns in [0, 1, -1, 1_796_306_400_000_000_000, 1_709_164_800_123_456_789, i64::MAX, -86_400_000_000_001] {
            let text = format_rfc3339(ns);
            assert_eq!(parse_rfc3339(&text), Ok(ns), "{text}");
        }
        assert_eq!(format_rfc3339(1_796_306_400_000_000_001), "2026-12-03T14:00:00.000000001Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
