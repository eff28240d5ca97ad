//! A streaming parser for the OpenMetrics text format, the input of
//! `create-blocks-from openmetrics` (as promtool reads it: every sample must carry a
//! timestamp in seconds, the file ends with `# EOF`). Metadata lines (`# HELP`,
//! `# TYPE`, `# UNIT`) and exemplars are accepted and skipped.

use std::io::BufRead;

use model::Labels;

/// A parse error with the 1-based line it occurred on.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
    #[error("input does not end with \"# EOF\"")]
    MissingEof,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub labels: Labels,
    /// Milliseconds.
    pub t: i64,
    pub v: f64,
}

/// Iterates the samples of an OpenMetrics text stream.
pub struct Parser<R> {
    input: R,
    line_no: usize,
    buf: String,
    done: bool,
}

impl<R: BufRead> Parser<R> {
    pub fn new(input: R) -> Self {
        Parser {
            input,
            line_no: 0,
            buf: String::new(),
            done: false,
        }
    }

    fn err(&self, reason: impl Into<String>) -> ParseError {
        ParseError::Syntax {
            line: self.line_no,
            reason: reason.into(),
        }
    }
}

impl<R: BufRead> Iterator for Parser<R> {
    type Item = Result<Entry, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.input.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return Some(Err(ParseError::MissingEof));
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
            self.line_no += 1;
            let line = self.buf.strip_suffix('\n').unwrap_or(&self.buf);
            if line == "# EOF" {
                self.done = true;
                return None;
            }
            if line.is_empty() {
                let e = self.err("empty line (not allowed in OpenMetrics)");
                self.done = true;
                return Some(Err(e));
            }
            if let Some(rest) = line.strip_prefix('#') {
                let ok = ["# HELP ", "# TYPE ", "# UNIT "]
                    .iter()
                    .any(|p| line.starts_with(p));
                if !ok {
                    let e = self.err(format!("unexpected comment {:?}", rest.trim()));
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            let r = parse_sample(line).map_err(|reason| self.err(reason));
            if r.is_err() {
                self.done = true;
            }
            return Some(r);
        }
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

fn parse_sample(line: &str) -> Result<Entry, String> {
    let b = line.as_bytes();
    let mut i = 0;
    if b.is_empty() || !is_name_start(b[0]) {
        return Err("expected a metric name".into());
    }
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    let name = &line[..i];
    let mut pairs: Vec<(String, String)> = vec![("__name__".into(), name.into())];
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            if i < b.len() && b[i] == b'}' {
                i += 1;
                break;
            }
            let start = i;
            if i >= b.len() || !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
                return Err("expected a label name".into());
            }
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let lname = &line[start..i];
            if i + 1 >= b.len() || b[i] != b'=' || b[i + 1] != b'"' {
                return Err(format!("expected =\" after label name {lname}"));
            }
            i += 2;
            let mut value = String::new();
            loop {
                let Some(&c) = b.get(i) else {
                    return Err("unterminated label value".into());
                };
                match c {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        match b.get(i + 1) {
                            Some(b'n') => value.push('\n'),
                            Some(b'"') => value.push('"'),
                            Some(b'\\') => value.push('\\'),
                            _ => return Err("invalid escape in label value".into()),
                        }
                        i += 2;
                    }
                    _ => {
                        // Copy one UTF-8 character.
                        let ch = line[i..].chars().next().ok_or("bad UTF-8")?;
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if pairs.iter().any(|(n, _)| n == lname) {
                return Err(format!("duplicate label name {lname}"));
            }
            pairs.push((lname.to_string(), value));
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err("expected , or } in label set".into()),
            }
        }
    }
    if b.get(i) != Some(&b' ') {
        return Err("expected a space before the value".into());
    }
    let rest = &line[i + 1..];
    // Drop an exemplar: "value ts # {..} v ts".
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut fields = rest.split(' ');
    let v = parse_float(fields.next().unwrap_or(""))?;
    let ts = fields
        .next()
        .ok_or("sample has no timestamp (backfilling needs one on every sample)")?;
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    let ts = parse_float(ts)?;
    if !ts.is_finite() {
        return Err(format!("invalid timestamp {ts}"));
    }
    // Seconds to milliseconds, truncating as Prometheus's parser does.
    let t = (ts * 1000.0) as i64;
    Ok(Entry {
        labels: Labels::from_pairs(pairs),
        t,
        v,
    })
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s.is_empty() => Err("missing value".into()),
        _ => s
            .parse::<f64>()
            .ok()
            .filter(|_| !s.contains(['i', 'I', 'n', 'N', '_']))
            .ok_or_else(|| format!("invalid number {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Entry>, ParseError> {
        Parser::new(s.as_bytes()).collect()
    }

    #[test]
    fn parses_samples_and_skips_metadata() {
        let text = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
            http_requests_total{code=\"200\",path=\"/a\\\"b\"} 1027 1395066363\n\
            http_requests_total{code=\"400\"} 3 1395066363.5 # {trace_id=\"x\"} 1 1395066363\n\
            up 1 1395066364\n# EOF\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0].labels.to_string(),
            r#"{__name__="http_requests_total", code="200", path="/a\"b"}"#
        );
        assert_eq!(e[0].t, 1_395_066_363_000);
        assert_eq!(e[1].t, 1_395_066_363_500);
        assert_eq!(e[2].v, 1.0);
    }

    #[test]
    fn special_values() {
        let e = parse("a NaN 1\nb +Inf 1\nc -Inf 1\nd 1e3 1\n# EOF\n").unwrap();
        assert!(e[0].v.is_nan());
        assert_eq!(e[1].v, f64::INFINITY);
        assert_eq!(e[2].v, f64::NEG_INFINITY);
        assert_eq!(e[3].v, 1000.0);
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("up 1 1\nup 1\n# EOF\n").unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        assert!(matches!(parse("up 1 1\n"), Err(ParseError::MissingEof)));
        assert!(parse("up{a=\"x} 1 1\n# EOF\n").is_err());
        assert!(parse("up{a=\"x\",a=\"y\"} 1 1\n# EOF\n").is_err());
        assert!(parse("up nope 1\n# EOF\n").is_err());
        assert!(parse("up 1 inf\n# EOF\n").is_err());
    }
}
