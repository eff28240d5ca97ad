//! Prometheus's duration grammar (`model.ParseDuration`): `1h30m`, `5m`, `90s`,
//! `500ms`, `2d`, `1w`, `1y`, `0`. One parser for flags, config files, rule files
//! and API parameters.

/// The units, largest first; each may appear at most once, in this order.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The milliseconds of one duration unit (`ms`, `s`, `m`, `h`, `d`, `w`, `y`).
pub fn duration_unit_ms(unit: &str) -> Option<i64> {
    UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|&(_, ms)| ms as i64)
}

/// Parses a Prometheus duration into milliseconds; `None` when it is not one (or
/// does not fit in an `i64` of milliseconds).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let i = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        next_unit = i + 1;
        total = total.checked_add(n.checked_mul(UNITS[i].1)?)?;
    }
    i64::try_from(total).ok()
}

/// Prometheus's text of a duration in milliseconds (`model.Duration.String()`):
/// `1h30m`, `5m`, `1d`, `0s`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in UNITS {
        let n = rest / size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(
            parse_duration_ms("1y2w3d4h5m6s7ms"),
            Some(
                365 * 86_400_000
                    + 14 * 86_400_000
                    + 3 * 86_400_000
                    + 4 * 3_600_000
                    + 5 * 60_000
                    + 6_000
                    + 7
            )
        );
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("0s"), Some(0));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in [
            "",
            "1",
            "m",
            "1.5h",
            "-5m",
            "30m1h",
            "1h1h",
            "5 m",
            "1x",
            "1hh",
            "99999999999999999999y",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_as_prometheus() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(86_400_000), "1d");
        assert_eq!(format_duration_ms(7 * 86_400_000), "1w");
        assert_eq!(format_duration_ms(1_500), "1s500ms");
        for s in ["1y2w3d4h5m6s7ms", "15s", "2h"] {
            assert_eq!(format_duration_ms(parse_duration_ms(s).unwrap() as u64), s);
        }
    }
}
