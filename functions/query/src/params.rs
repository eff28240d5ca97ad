//! Request parameters as Prometheus's HTTP API reads them: times (unix seconds
//! with decimals or RFC 3339), durations (float seconds or `5m`), `match[]`
//! selectors, and Thanos's booleans.

use model::{MatchType, Matcher, METRIC_NAME};
use promql_parser::label::MatchOp;

/// Prometheus's `MinTime` (ms): the default start of `series` and `labels`.
pub const MIN_TIME: i64 = -9_223_309_901_257_974_000;
/// Prometheus's `MaxTime` (ms): the default end of `series` and `labels`.
pub const MAX_TIME: i64 = 9_223_309_901_257_974_999;

/// Query-string and form parameters, in order, repeated names kept.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a query string or body)
    /// and appends its pairs.
    pub fn extend_urlencoded(&mut self, s: &[u8]) {
        self.0
            .extend(form_urlencoded::parse(s).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }

    /// The first value of `name` (Go's `FormValue`: "" when absent).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 with optional fraction (Go's `time.RFC3339Nano` parse), in ms.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i];
        let mut digits: String = frac.chars().take(3).collect();
        while digits.len() < 3 {
            digits.push('0');
        }
        ms = digits.parse().ok()?;
    }
    let off = match &s[i..] {
        "Z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let rb = rest.as_bytes();
            if rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let o = (oh * 60 + om) * 60;
            if rest.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - off;
    Some(secs * 1000 + ms)
}

/// Prometheus's `parseTime`, in ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<f64>() {
        if t.is_finite() {
            let sec = t.trunc();
            let ns = ((t - sec) * 1000.0).round() / 1000.0;
            let mut sec = sec as i64;
            let mut nsi = (ns * 1e9) as i64;
            if nsi < 0 {
                sec -= 1;
                nsi += 1_000_000_000;
            }
            return Ok(sec.saturating_mul(1000).saturating_add(nsi / 1_000_000));
        }
    }
    if let Some(ms) = parse_rfc3339(s) {
        return Ok(ms);
    }
    match s {
        "-292273086-05-16T16:47:06Z" => Ok(MIN_TIME),
        "292277025-08-18T07:12:54.999999999Z" => Ok(MAX_TIME),
        _ => Err(format!(
            "cannot parse {} to a valid timestamp",
            model::go_quote(s)
        )),
    }
}

/// Prometheus's `model.ParseDuration` (`1h30m`, units y w d h m s ms), in ms.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    model::parse_duration_ms(s)
}

/// Prometheus's API `parseDuration` (float seconds or a duration), in ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(d) = s.parse::<f64>() {
        let ns = d * 1e9;
        if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                model::go_quote(s)
            ));
        }
        return Ok((ns as i64) / 1_000_000);
    }
    parse_prom_duration(s)
        .ok_or_else(|| format!("cannot parse {} to a valid duration", model::go_quote(s)))
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A series selector (`match[]`) as matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let expr = promql::parse(s).map_err(|e| e.to_string())?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "1:1: parse error: unexpected expression in {s:?}, want a series selector"
        ));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err("'or' in label matchers is not supported".into());
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        out.push(Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
    }
    if out.iter().all(|m| m.matches("")) {
        return Err("match[] must contain at least one non-empty matcher".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time("1435781451").unwrap(), 1_435_781_451_000);
        assert_eq!(parse_time("-1.5").unwrap(), -1500);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00").unwrap(),
            1_435_781_451_000
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("-292273086-05-16T16:47:06Z").unwrap(), MIN_TIME);
        assert_eq!(
            parse_time("x").unwrap_err(),
            r#"cannot parse "x" to a valid timestamp"#
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("5m").unwrap(), 300_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("100ms").unwrap(), 100);
        assert!(parse_duration("30m1h").is_err());
        assert_eq!(
            parse_duration("").unwrap_err(),
            r#"cannot parse "" to a valid duration"#
        );
    }

    #[test]
    fn selectors() {
        let m = parse_selector(r#"up{job=~"a.*"}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_selector(r#"{job=""}"#).is_err());
        assert!(parse_selector("rate(x[5m])").is_err());
    }
}
