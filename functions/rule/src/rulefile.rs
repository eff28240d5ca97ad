//! Prometheus rule files (`groups:` of recording and alerting rules), with Thanos's
//! per-group `partial_response_strategy`, parsed strictly and validated as
//! Prometheus's `rulefmt` does, with its error texts: each error names the file,
//! the group, the rule (1-based index and name) and, where Prometheus does, the
//! `line:column` of the offending value.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::template;
use crate::yaml::{self, Node, Pos};
use crate::{Error, Result};

/// Thanos's partial response strategy of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PartialResponseStrategy {
    /// A query answered only in part (warnings) fails the evaluation.
    #[default]
    Abort,
    /// A partial answer is used; its warnings are logged.
    Warn,
}

impl PartialResponseStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            PartialResponseStrategy::Abort => "ABORT",
            PartialResponseStrategy::Warn => "WARN",
        }
    }
}

/// What a rule produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// A recording rule and the metric name it records.
    Record(String),
    /// An alerting rule and its alert name.
    Alert(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    pub expr: String,
    /// `for` (alerts only).
    pub for_: Duration,
    /// `keep_firing_for` (alerts only).
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record(n) | RuleKind::Alert(n) => n,
        }
    }
    pub fn is_alert(&self) -> bool {
        matches!(self.kind, RuleKind::Alert(_))
    }
}

/// One group of rules, evaluated together at the group's interval.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    /// The file the group came from.
    pub file: String,
    /// `interval` (None: the ruler's `--eval-interval`).
    pub interval: Option<Duration>,
    /// Most series a rule may produce (0: no limit).
    pub limit: usize,
    /// `query_offset`: evaluate at `t - offset`.
    pub query_offset: Option<Duration>,
    pub partial_response_strategy: PartialResponseStrategy,
    pub rules: Vec<Rule>,
}

/// Parses and validates one rule file's text. Errors are Prometheus's texts
/// without the file name (`5:15: group "g", rule 1, "x": could not parse ...`).
pub fn parse_rules(text: &str, file: &str) -> std::result::Result<Vec<RuleGroup>, Vec<String>> {
    let root = match yaml::parse(text) {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(Vec::new()),
        // Prometheus decodes twice (strict, then into nodes) and reports a syntax
        // error from both.
        Err(e) => return Err(vec![e.clone(), e]),
    };
    let mut d = Decoder::default();
    let groups = d.groups(&root, file);
    if !d.unmarshal.is_empty() {
        return Err(vec![format!(
            "yaml: unmarshal errors:\n  {}",
            d.unmarshal.join("\n  ")
        )]);
    }
    if let Some(e) = d.fatal {
        return Err(vec![e]);
    }
    let errs = validate(&groups);
    if errs.is_empty() {
        Ok(groups.into_iter().map(GroupNodes::finish).collect())
    } else {
        Err(errs)
    }
}

/// Reads, parses and validates rule files; every error is prefixed with its file
/// (`FILE: error`), as `promtool check rules` prints them.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<RuleGroup>> {
    let mut groups = Vec::new();
    let mut errs = Vec::new();
    for p in paths {
        match load_file(p) {
            Ok(g) => groups.extend(g),
            Err(e) => errs.extend(e),
        }
    }
    if errs.is_empty() {
        Ok(groups)
    } else {
        Err(Error::RuleFiles(errs))
    }
}

/// One file: its groups, or its errors (each prefixed with the file name).
pub fn load_file(path: &Path) -> std::result::Result<Vec<RuleGroup>, Vec<String>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: {e}")])?;
    parse_rules(&text, &name).map_err(|es| es.into_iter().map(|e| format!("{name}: {e}")).collect())
}

/// Expands `--rule-file` values: each is a path or a glob (`rules/*.yaml`). A
/// pattern that matches nothing is not an error (Thanos's behaviour), a malformed
/// one is.
pub fn expand_globs(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in patterns {
        let matches =
            glob::glob(p).map_err(|e| Error::Config(format!("--rule-file {p:?}: {e}")))?;
        let mut found: Vec<PathBuf> = matches.filter_map(|m| m.ok()).collect();
        found.sort();
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decoding the node tree (Go yaml's strict decoding into rulefmt's types).

/// A rule's fields as nodes, for positions in errors.
#[derive(Default)]
struct RuleNodes {
    record: Option<Node>,
    alert: Option<Node>,
    expr: Option<Node>,
    for_: Duration,
    keep_firing_for: Duration,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

struct GroupNodes {
    group: RuleGroup,
    pos: Pos,
    rules: Vec<RuleNodes>,
}

#[derive(Default)]
struct Decoder {
    /// Go yaml's "unmarshal errors" (type mismatches, unknown fields).
    unmarshal: Vec<String>,
    /// An error that stops decoding (a bad duration).
    fatal: Option<String>,
}

fn scalar(n: &Node) -> Option<&str> {
    match n {
        Node::Scalar { value, .. } => Some(value),
        _ => None,
    }
}

impl Decoder {
    fn type_err(&mut self, n: &Node, want: &str) {
        let shown = match n {
            Node::Scalar { value, .. } => format!(" `{value}`"),
            _ => String::new(),
        };
        self.unmarshal.push(format!(
            "line {}: cannot unmarshal {}{shown} into {want}",
            n.pos().line,
            n.tag()
        ));
    }

    fn unknown(&mut self, k: &Node, ty: &str) {
        self.unmarshal.push(format!(
            "line {}: field {} not found in type {ty}",
            k.pos().line,
            scalar(k).unwrap_or("?")
        ));
    }

    fn string(&mut self, n: &Node) -> String {
        match n {
            Node::Scalar { value, .. } => value.clone(),
            other => {
                self.type_err(other, "string");
                String::new()
            }
        }
    }

    fn duration(&mut self, n: &Node) -> Duration {
        let s = self.string(n);
        if s.is_empty() {
            return Duration::ZERO;
        }
        match parse_prom_duration(&s) {
            Some(d) => d,
            None => {
                if self.fatal.is_none() {
                    self.fatal = Some(format!("not a valid duration string: {s:?}"));
                }
                Duration::ZERO
            }
        }
    }

    fn string_map(&mut self, n: &Node) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match n {
            Node::Map(entries, _) => {
                for (k, v) in entries {
                    let k = self.string(k);
                    let v = self.string(v);
                    out.insert(k, v);
                }
            }
            n if n.is_null() => {}
            other => self.type_err(other, "map[string]string"),
        }
        out
    }

    fn groups(&mut self, root: &Node, file: &str) -> Vec<GroupNodes> {
        let mut out = Vec::new();
        let entries = match root {
            Node::Map(e, _) => e,
            n if n.is_null() => return out,
            other => {
                self.type_err(other, "rulefmt.RuleGroups");
                return out;
            }
        };
        for (k, v) in entries {
            if scalar(k) != Some("groups") {
                self.unknown(k, "rulefmt.RuleGroups");
                continue;
            }
            match v {
                Node::Seq(items, _) => {
                    for g in items {
                        if let Some(g) = self.group(g, file) {
                            out.push(g);
                        }
                    }
                }
                n if n.is_null() => {}
                other => self.type_err(other, "[]rulefmt.RuleGroup"),
            }
        }
        out
    }

    fn group(&mut self, n: &Node, file: &str) -> Option<GroupNodes> {
        let Node::Map(entries, pos) = n else {
            self.type_err(n, "rulefmt.RuleGroup");
            return None;
        };
        let mut g = GroupNodes {
            group: RuleGroup {
                name: String::new(),
                file: file.to_string(),
                interval: None,
                limit: 0,
                query_offset: None,
                partial_response_strategy: PartialResponseStrategy::Abort,
                rules: Vec::new(),
            },
            pos: *pos,
            rules: Vec::new(),
        };
        for (k, v) in entries {
            match scalar(k).unwrap_or("") {
                "name" => g.group.name = self.string(v),
                "interval" => {
                    let d = self.duration(v);
                    g.group.interval = (!d.is_zero()).then_some(d);
                }
                "query_offset" => {
                    let d = self.duration(v);
                    g.group.query_offset = (!d.is_zero()).then_some(d);
                }
                "limit" => {
                    let s = self.string(v);
                    match s.parse::<i64>() {
                        Ok(l) => g.group.limit = usize::try_from(l.max(0)).unwrap_or(0),
                        Err(_) if s.is_empty() => {}
                        Err(_) => self.type_err(v, "int"),
                    }
                }
                "partial_response_strategy" => {
                    let s = self.string(v);
                    g.group.partial_response_strategy = match s.to_ascii_uppercase().as_str() {
                        "" | "ABORT" => PartialResponseStrategy::Abort,
                        "WARN" => PartialResponseStrategy::Warn,
                        _ => {
                            if self.fatal.is_none() {
                                self.fatal = Some(format!(
                                    "{}: group {:?}: invalid partial_response_strategy {s:?}: want abort or warn",
                                    v.pos(),
                                    g.group.name
                                ));
                            }
                            PartialResponseStrategy::Abort
                        }
                    };
                }
                "rules" => match v {
                    Node::Seq(items, _) => {
                        for r in items {
                            if let Some(r) = self.rule(r) {
                                g.rules.push(r);
                            }
                        }
                    }
                    n if n.is_null() => {}
                    other => self.type_err(other, "[]rulefmt.RuleNode"),
                },
                _ => self.unknown(k, "rulefmt.RuleGroup"),
            }
        }
        Some(g)
    }

    fn rule(&mut self, n: &Node) -> Option<RuleNodes> {
        let Node::Map(entries, _) = n else {
            self.type_err(n, "rulefmt.RuleNode");
            return None;
        };
        let mut r = RuleNodes::default();
        for (k, v) in entries {
            match scalar(k).unwrap_or("") {
                "record" => {
                    self.string(v);
                    r.record = Some(v.clone());
                }
                "alert" => {
                    self.string(v);
                    r.alert = Some(v.clone());
                }
                "expr" => {
                    self.string(v);
                    r.expr = Some(v.clone());
                }
                "for" => r.for_ = self.duration(v),
                "keep_firing_for" => r.keep_firing_for = self.duration(v),
                "labels" => r.labels = self.string_map(v),
                "annotations" => r.annotations = self.string_map(v),
                _ => self.unknown(k, "rulefmt.RuleNode"),
            }
        }
        Some(r)
    }
}

/// Prometheus's duration grammar (`1h30m`, `5m`, `0`), as `model.ParseDuration`.
pub fn parse_prom_duration(s: &str) -> Option<Duration> {
    model::parse_duration_ms(s).map(|ms| Duration::from_millis(ms as u64))
}

/// Prometheus's text of a duration (`model.Duration.String()`): `1h30m`, `5m`, `0s`.
pub fn format_prom_duration(d: Duration) -> String {
    model::format_duration_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------
// Validation (rulefmt's `RuleGroups.Validate` and `RuleNode.Validate`).

/// A valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn node_pos(n: &Option<Node>) -> Pos {
    n.as_ref().map(Node::pos).unwrap_or_default()
}

fn node_value(n: &Option<Node>) -> &str {
    n.as_ref().and_then(scalar).unwrap_or("")
}

/// A rule's errors: `(error, node position, alternative node position)`.
fn validate_rule(r: &RuleNodes) -> Vec<(String, Option<Pos>, Option<Pos>)> {
    let mut out = Vec::new();
    let record = node_value(&r.record);
    let alert = node_value(&r.alert);
    let expr = node_value(&r.expr);
    if !record.is_empty() && !alert.is_empty() {
        out.push((
            "only one of 'record' and 'alert' must be set".to_string(),
            Some(node_pos(&r.record)),
            Some(node_pos(&r.alert)),
        ));
    }
    if record.is_empty() && alert.is_empty() {
        out.push((
            "one of 'record' or 'alert' must be set".to_string(),
            Some(node_pos(&r.record)),
            None,
        ));
    }
    if expr.is_empty() {
        out.push((
            "field 'expr' must be set in rule".to_string(),
            Some(node_pos(&r.expr)),
            None,
        ));
    } else if let Err(e) = promql_parser::parser::parse(expr) {
        out.push((
            format!("could not parse expression: {}", e.trim()),
            Some(node_pos(&r.expr)),
            None,
        ));
    }
    if !record.is_empty() {
        let p = Some(node_pos(&r.record));
        if !r.annotations.is_empty() {
            out.push((
                "invalid field 'annotations' in recording rule".into(),
                p,
                None,
            ));
        }
        if !r.for_.is_zero() {
            out.push(("invalid field 'for' in recording rule".into(), p, None));
        }
        if !r.keep_firing_for.is_zero() {
            out.push((
                "invalid field 'keep_firing_for' in recording rule".into(),
                p,
                None,
            ));
        }
        if !is_valid_metric_name(record) {
            out.push((format!("invalid recording rule name: {record}"), p, None));
        }
    }
    for k in r.labels.keys() {
        if !is_valid_label_name(k) || k == "__name__" {
            out.push((format!("invalid label name: {k}"), None, None));
        }
    }
    for k in r.annotations.keys() {
        if !is_valid_label_name(k) {
            out.push((format!("invalid annotation name: {k}"), None, None));
        }
    }
    if !alert.is_empty() {
        let name = format!("__alert_{alert}");
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(e) = template::parse_alert_template(&name, v) {
                    out.push((format!("{what} {k:?}: {e}"), None, None));
                }
            }
        }
    }
    out
}

fn validate(groups: &[GroupNodes]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for g in groups {
        let name = &g.group.name;
        if name.is_empty() {
            errs.push(format!("{}: Groupname must not be empty", g.pos));
        }
        if !seen.insert(name.clone()) {
            errs.push(format!(
                "{}: groupname: \"{name}\" is repeated in the same file",
                g.pos
            ));
        }
        for (i, r) in g.rules.iter().enumerate() {
            let rule_name = if node_value(&r.alert).is_empty() {
                node_value(&r.record)
            } else {
                node_value(&r.alert)
            };
            for (e, p, alt) in validate_rule(r) {
                let at = match (p, alt) {
                    (Some(p), Some(a)) => format!("{p}: {a}: "),
                    (Some(p), None) => format!("{p}: "),
                    _ => String::new(),
                };
                errs.push(format!(
                    "{at}group {name:?}, rule {}, {rule_name:?}: {e}",
                    i + 1
                ));
            }
        }
    }
    errs
}

impl GroupNodes {
    fn finish(mut self) -> RuleGroup {
        for r in self.rules {
            let record = node_value(&r.record).to_string();
            let kind = if record.is_empty() {
                RuleKind::Alert(node_value(&r.alert).to_string())
            } else {
                RuleKind::Record(record)
            };
            self.group.rules.push(Rule {
                kind,
                expr: node_value(&r.expr).to_string(),
                for_: r.for_,
                keep_firing_for: r.keep_firing_for,
                labels: r.labels,
                annotations: r.annotations,
            });
        }
        self.group
    }
}

/// `aether tools rules-check`: checks each file like `promtool check rules` and
/// returns (stdout text, stderr text, success).
pub fn check_files(paths: &[PathBuf]) -> (String, String, bool) {
    let (mut out, mut err) = (String::new(), String::new());
    let mut ok = true;
    for p in paths {
        out.push_str(&format!("Checking {}\n", p.display()));
        match load_file(p) {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                out.push_str(&format!("  SUCCESS: {n} rules found\n"));
            }
            Err(es) => {
                ok = false;
                err.push_str("  FAILED:\n");
                for e in es {
                    err.push_str(&e);
                    err.push('\n');
                }
            }
        }
        out.push('\n');
    }
    (out, err, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_prom_duration("1h30m"),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_prom_duration("500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_prom_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_prom_duration("30m1h"), None);
        assert_eq!(parse_prom_duration("5 m"), None);
        assert_eq!(format_prom_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_prom_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn good_file() {
        let text = r#"
groups:
  - name: g
    interval: 30s
    limit: 10
    partial_response_strategy: warn
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: ThanosDown
        expr: up{job="thanos"} == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.instance }} is down ({{ $value | humanize }})"
"#;
        let g = parse_rules(text, "f.yml").unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(g[0].limit, 10);
        assert_eq!(
            g[0].partial_response_strategy,
            PartialResponseStrategy::Warn
        );
        assert_eq!(g[0].rules[0].kind, RuleKind::Record("job:up:sum".into()));
        assert_eq!(g[0].rules[1].for_, Duration::from_secs(300));
        assert_eq!(g[0].rules[1].keep_firing_for, Duration::from_secs(60));
        assert_eq!(g[0].rules[1].labels["severity"], "critical");
    }

    #[test]
    fn errors_name_group_rule_and_line() {
        let text = "groups:\n  - name: example\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up\n      - record: \"bad name\"\n        expr: up\n      - alert: Y\n        record: Z\n        expr: up\n  - name: example\n    rules: []\n";
        let e = parse_rules(text, "f").unwrap_err();
        assert!(
            e[0].starts_with(
                "5:15: group \"example\", rule 1, \"job:up:sum\": could not parse expression: "
            ),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            "6:17: group \"example\", rule 2, \"bad name\": invalid recording rule name: bad name"
        );
        assert_eq!(e[2], "9:17: 8:16: group \"example\", rule 3, \"Y\": only one of 'record' and 'alert' must be set");
        assert_eq!(
            e[3],
            "11:5: groupname: \"example\" is repeated in the same file"
        );
    }

    #[test]
    fn unknown_fields_and_bad_templates() {
        let e = parse_rules("groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        foo: bar\n", "f").unwrap_err();
        assert_eq!(
            e,
            vec!["yaml: unmarshal errors:\n  line 6: field foo not found in type rulefmt.RuleNode"]
        );
        let e = parse_rules("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: up\n    labels: {\"bad-name\": x}\n    annotations: {s: \"{{ $labels.x \"}\n", "f").unwrap_err();
        assert_eq!(
            e[0],
            "group \"g\", rule 1, \"X\": invalid label name: bad-name"
        );
        assert_eq!(
            e[1],
            "group \"g\", rule 1, \"X\": annotation \"s\": template: __alert_X:1: unclosed action"
        );
        let e = parse_rules(
            "groups:\n- name: g\n  rules:\n  - alert: X\n    expr: up\n    for: 5x\n",
            "f",
        )
        .unwrap_err();
        assert_eq!(e, vec!["not a valid duration string: \"5x\""]);
    }
}
