//! Prometheus's JSON encoding of API answers, byte for byte: the envelope,
//! timestamps as seconds with the milliseconds kept (`1.500`), values as strings
//! in Go's `strconv.FormatFloat(v, 'f', -1, 64)` form, strings escaped as Go's
//! `encoding/json` escapes them (HTML-safe).

use std::fmt::Write as _;

use model::{FloatHistogram, Labels, Span};
use promql::Value;

/// Appends `s` as a JSON string, escaped as Go's `encoding/json` does.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A timestamp (ms) as Prometheus writes it: `<seconds>[.<3 digits>]`.
pub fn write_ts(out: &mut String, t: i64) {
    let mut t = t as i128;
    if t < 0 {
        out.push('-');
        t = -t;
    }
    let _ = write!(out, "{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// A sample value as Prometheus writes it (Go's 'f', -1 formatting).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// `[<ts>,"<value>"]`.
pub fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_ts(out, t);
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

fn buckets(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::new();
    let mut idx: i32 = 0;
    let mut pos = 0usize;
    for span in spans {
        idx = idx.wrapping_add(span.offset);
        for _ in 0..span.length {
            let Some(&c) = counts.get(pos) else {
                return out;
            };
            out.push((idx, c));
            pos += 1;
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// A native histogram as Prometheus writes it: `{"count":..,"sum":..,
/// "buckets":[[boundaries,lower,upper,count],..]}` (empty buckets left out;
/// boundaries 0 = (lower, upper], 1 = [lower, upper), 2 = open, 3 = closed).
pub fn write_histogram(out: &mut String, h: &FloatHistogram) {
    let custom = h.uses_custom_buckets();
    let cv = &h.custom_values;
    let mut all: Vec<(f64, f64, f64, bool)> = Vec::new();
    for (i, c) in buckets(&h.negative_spans, &h.negative_buckets)
        .into_iter()
        .rev()
    {
        let lower = -model::bucket_upper_bound(i, h.schema, cv);
        let upper = -model::bucket_upper_bound(i - 1, h.schema, cv);
        all.push((lower, upper, c, false));
    }
    if !custom && (h.zero_threshold != 0.0 || h.zero_count != 0.0) {
        all.push((-h.zero_threshold, h.zero_threshold, h.zero_count, true));
    }
    for (i, c) in buckets(&h.positive_spans, &h.positive_buckets) {
        let lower = model::bucket_upper_bound(i - 1, h.schema, cv);
        let upper = model::bucket_upper_bound(i, h.schema, cv);
        all.push((lower, upper, c, false));
    }
    out.push_str(r#"{"count":""#);
    out.push_str(&format_value(h.count));
    out.push_str(r#"","sum":""#);
    out.push_str(&format_value(h.sum));
    out.push('"');
    let mut found = false;
    for (lower, upper, count, zero) in all {
        if count == 0.0 {
            continue;
        }
        out.push(',');
        if !found {
            out.push_str(r#""buckets":["#);
            found = true;
        }
        let (li, ui) = if zero {
            (true, true)
        } else if custom {
            (lower == f64::NEG_INFINITY, true)
        } else {
            (lower < 0.0, upper > 0.0)
        };
        let b = match (li, ui) {
            (true, true) => 3,
            (true, false) => 1,
            (false, true) => 0,
            (false, false) => 2,
        };
        let _ = write!(
            out,
            r#"[{b},"{}","{}","{}"]"#,
            format_value(lower),
            format_value(upper),
            format_value(count)
        );
    }
    if found {
        out.push(']');
    }
    out.push('}');
}

/// `[<ts>,{histogram}]`.
pub fn write_hist_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    write_ts(out, t);
    out.push(',');
    write_histogram(out, h);
    out.push(']');
}

/// A label set as a JSON object.
pub fn write_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &lb.name);
        out.push(':');
        write_str(out, &lb.value);
    }
    out.push('}');
}

/// A list of strings as a JSON array.
pub fn write_strings<S: AsRef<str>>(out: &mut String, v: &[S]) {
    out.push('[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s.as_ref());
    }
    out.push(']');
}

/// Appends Prometheus's `stats` object (its `stats=all` answer: timings in
/// seconds, then sample figures) to a query's `data` object (`query_data`'s text).
/// `queue` is the time spent waiting for a query slot, `total` the whole execution.
pub fn add_query_stats(data: &mut String, s: &promql::QueryStats, queue: f64, total: f64) {
    if !data.ends_with('}') {
        return;
    }
    data.pop();
    let prepare = s.prepare_time.as_secs_f64();
    let inner = s.eval_time.as_secs_f64();
    let _ = write!(
        data,
        r#","stats":{{"timings":{{"evalTotalTime":{},"resultSortTime":0,"queryPreparationTime":{prepare},"innerEvalTime":{inner},"execQueueTime":{queue},"execTotalTime":{total}}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}}}}}}"#,
        prepare + inner,
        s.total_samples,
        s.peak_samples,
    );
}

/// `{"resultType":..,"result":..}` of a query.
pub fn query_data(v: &Value) -> String {
    let mut o = String::new();
    match v {
        Value::Scalar { t, v } => {
            o.push_str(r#"{"resultType":"scalar","result":"#);
            write_point(&mut o, *t, *v);
        }
        Value::String { t, v } => {
            o.push_str(r#"{"resultType":"string","result":["#);
            write_ts(&mut o, *t);
            o.push(',');
            write_str(&mut o, v);
            o.push(']');
        }
        Value::Vector(samples) => {
            o.push_str(r#"{"resultType":"vector","result":["#);
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                o.push_str(r#"{"metric":"#);
                write_labels(&mut o, &s.labels);
                match &s.h {
                    Some(h) => {
                        o.push_str(r#","histogram":"#);
                        write_hist_point(&mut o, s.t, h);
                    }
                    None => {
                        o.push_str(r#","value":"#);
                        write_point(&mut o, s.t, s.v);
                    }
                }
                o.push('}');
            }
            o.push(']');
        }
        Value::Matrix(series) => {
            o.push_str(r#"{"resultType":"matrix","result":["#);
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                o.push_str(r#"{"metric":"#);
                write_labels(&mut o, &s.labels);
                if !s.floats.is_empty() || s.histograms.is_empty() {
                    o.push_str(r#","values":["#);
                    for (j, (t, v)) in s.floats.iter().enumerate() {
                        if j > 0 {
                            o.push(',');
                        }
                        write_point(&mut o, *t, *v);
                    }
                    o.push(']');
                }
                if !s.histograms.is_empty() {
                    o.push_str(r#","histograms":["#);
                    for (j, (t, h)) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            o.push(',');
                        }
                        write_hist_point(&mut o, *t, h);
                    }
                    o.push(']');
                }
                o.push('}');
            }
            o.push(']');
        }
    }
    o.push('}');
    o
}

/// `{"status":"success","data":DATA[,"warnings":[..]][,"infos":[..]]}`.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut o = String::with_capacity(data.len() + 64);
    o.push_str(r#"{"status":"success","data":"#);
    o.push_str(data);
    annotations(&mut o, warnings, infos);
    o.push('}');
    o
}

fn annotations(o: &mut String, warnings: &[String], infos: &[String]) {
    if !warnings.is_empty() {
        o.push_str(r#","warnings":"#);
        write_strings(o, warnings);
    }
    if !infos.is_empty() {
        o.push_str(r#","infos":"#);
        write_strings(o, infos);
    }
}

/// `{"status":"error","errorType":..,"error":..[,"warnings":[..]]}`.
pub fn error(error_type: &str, msg: &str, warnings: &[String]) -> String {
    let mut o = String::new();
    o.push_str(r#"{"status":"error","errorType":"#);
    write_str(&mut o, error_type);
    o.push_str(r#","error":"#);
    write_str(&mut o, msg);
    annotations(&mut o, warnings, &[]);
    o.push('}');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql::{RangeSeries, Sample};

    #[test]
    fn values_and_timestamps() {
        let mut o = String::new();
        write_point(&mut o, 1_435_781_451_781, 1.0);
        assert_eq!(o, r#"[1435781451.781,"1"]"#);
        o.clear();
        write_point(&mut o, 1500, 0.1);
        assert_eq!(o, r#"[1.500,"0.1"]"#);
        o.clear();
        write_point(&mut o, -1005, f64::NAN);
        assert_eq!(o, r#"[-1.005,"NaN"]"#);
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(123456.789), "123456.789");
    }

    #[test]
    fn envelope() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a<b")]);
        let v = Value::Vector(vec![Sample {
            labels: l.clone(),
            t: 1000,
            v: 1.0,
            h: None,
        }]);
        assert_eq!(
            success(&query_data(&v), &[], &[]),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\u003cb"},"value":[1,"1"]}]}}"#
        );
        let m = Value::Matrix(vec![RangeSeries {
            labels: l,
            floats: vec![(0, 1.0), (15_000, 2.5)],
            histograms: vec![],
        }]);
        assert_eq!(
            query_data(&m),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\u003cb"},"values":[[0,"1"],[15,"2.5"]]}]}"#
        );
        assert_eq!(
            error("bad_data", "x \"y\"", &["w".into()]),
            r#"{"status":"error","errorType":"bad_data","error":"x \"y\"","warnings":["w"]}"#
        );
    }

    #[test]
    fn histogram() {
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 5.0,
            sum: 7.5,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![2.0, 0.0],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            negative_buckets: vec![2.0],
            ..Default::default()
        };
        let mut o = String::new();
        write_histogram(&mut o, &h);
        assert_eq!(
            o,
            r#"{"count":"5","sum":"7.5","buckets":[[1,"-1","-0.5","2"],[3,"-0.001","0.001","1"],[0,"0.5","1","2"]]}"#
        );
    }
}
