//! Alert label and annotation templates: the part of Go's `text/template` that
//! Prometheus's rules use, with Prometheus's template functions.
//!
//! Prometheus expands a template with the data `{Labels, ExternalLabels,
//! ExternalURL, Value}` and the prefix
//! `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`,
//! so `{{ $labels.x }}`, `{{ .Labels.x }}`, `{{ $value }}` and
//! `{{ $externalLabels.x }}` all work; so does [`expand_alert`].
//!
//! Supported: text, comments, `{{-`/`-}}` trimming, pipelines with `|`,
//! variables (`:=`, `=`), fields (`.A.B`, `$x.A`), parenthesised pipelines,
//! string/raw-string/number/bool/nil literals, `if`/`else if`/`else`, `range`
//! (with `$i, $e :=`, `else`), `with`, `end`; Go's builtins (`and or not len
//! index print printf println eq ne lt le gt ge html js urlquery`) and
//! Prometheus's (`humanize humanize1024 humanizeDuration humanizePercentage
//! humanizeTimestamp title toUpper toLower match reReplaceAll stripPort
//! stripDomain parseDuration safeHtml pathPrefix externalURL`). Not supported:
//! `query` (and the functions over its results: `first label value strvalue
//! sortByLabel`), which fail at expansion with a clear error; `define`,
//! `template`, `block`, `break`, `continue`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A `map[string]string` (labels).
    Map(BTreeMap<String, String>),
    List(Vec<Value>),
}

impl Value {
    fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }

    fn go_type(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
            Value::List(_) => "[]interface {}",
        }
    }

    /// `fmt.Sprint` of the value.
    fn print(&self) -> String {
        match self {
            Value::Nil => "<no value>".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => model::format_go_float(*f),
            Value::Str(s) => s.clone(),
            Value::Map(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", parts.join(" "))
            }
            Value::List(l) => {
                let parts: Vec<String> = l.iter().map(Value::print).collect();
                format!("[{}]", parts.join(" "))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parse tree.

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    /// `.A.B` on dot.
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Lit(Value),
    Func(String),
    /// `( pipeline ).A.B`
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    /// `=` rather than `:=`.
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum TNode {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<TNode>, Vec<TNode>),
    Range(Pipe, Vec<TNode>, Vec<TNode>),
    With(Pipe, Vec<TNode>, Vec<TNode>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<TNode>,
}

/// The prefix Prometheus puts before every alert template.
pub const ALERT_PREFIX: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Parses an alert label/annotation template (with Prometheus's variable prefix).
pub fn parse_alert_template(name: &str, text: &str) -> Result<Template, String> {
    Template::parse(name, &format!("{ALERT_PREFIX}{text}"))
}

/// Expands an alert template as Prometheus does; an error becomes the text
/// `<error expanding template: ...>`, as Prometheus logs and stores it.
pub fn expand_alert(
    alert_name: &str,
    text: &str,
    labels: &BTreeMap<String, String>,
    external_labels: &BTreeMap<String, String>,
    external_url: &str,
    value: f64,
) -> String {
    let name = format!("__alert_{alert_name}");
    let result = parse_alert_template(&name, text).and_then(|t| {
        let data = AlertData {
            labels: labels.clone(),
            external_labels: external_labels.clone(),
            external_url: external_url.to_string(),
            value,
        };
        t.execute(&data)
    });
    match result {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(alert = alert_name, error = %e, "expanding alert template failed");
            format!("<error expanding template: {e}>")
        }
    }
}

/// The data of an alert template (`.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value`).
#[derive(Debug, Clone, Default)]
pub struct AlertData {
    pub labels: BTreeMap<String, String>,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub value: f64,
}

// ---------------------------------------------------------------------------
// Lexing: split into text and actions.

enum Piece {
    Text(String),
    Action(String, usize),
}

fn split(name: &str, src: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        let mut inner = &rest[start + 2..];
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            text = text.trim_end();
            inner = &inner[1..];
        }
        line += rest[..start].matches('\n').count();
        if !text.is_empty() {
            out.push(Piece::Text(text.to_string()));
        }
        let action_line = line;
        // Find the closing braces outside quotes.
        let bytes = inner.as_bytes();
        let mut i = 0;
        let mut end = None;
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            let c = bytes[i];
            match quote {
                Some(q) => {
                    if c == b'\\' && q != b'`' {
                        i += 1;
                    } else if c == q {
                        quote = None;
                    } else if c == b'\n' && q != b'`' {
                        return Err(format!(
                            "template: {name}:{action_line}: unterminated quoted string"
                        ));
                    }
                }
                None => {
                    if c == b'"' || c == b'`' || c == b'\'' {
                        quote = Some(c);
                    } else if inner[i..].starts_with("}}") {
                        end = Some((i, i + 2, false));
                        break;
                    } else if (inner[i..].starts_with(" -}}")
                        || inner[i..].starts_with("\t-}}")
                        || inner[i..].starts_with("\n-}}"))
                        && !inner[..i].trim().starts_with("/*")
                    {
                        end = Some((i, i + 4, true));
                        break;
                    }
                }
            }
            i += 1;
        }
        let Some((body_end, after, trim_after)) = end else {
            if quote.is_some() {
                return Err(format!(
                    "template: {name}:{action_line}: unterminated quoted string"
                ));
            }
            return Err(format!("template: {name}:{action_line}: unclosed action"));
        };
        let body = &inner[..body_end];
        line += inner[..after].matches('\n').count();
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err(format!("template: {name}:{action_line}: unclosed comment"));
            }
        } else {
            out.push(Piece::Action(body.to_string(), action_line));
        }
        rest = &inner[after..];
        if trim_after {
            let t = rest.trim_start();
            line += rest[..rest.len() - t.len()].matches('\n').count();
            rest = t;
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    Field(String),
    Var(String),
    Str(String),
    Num(String),
    Ident(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

fn unquote(q: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = q.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'x' => {
                let h: String = it.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&h, 16).ok()?));
            }
            'u' => {
                let h: String = it.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn lex(body: &str, err: &dyn Fn(String) -> String) -> Result<Vec<Tok>, String> {
    let b = body.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'|' {
            out.push(Tok::Pipe);
            i += 1;
        } else if c == b'(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == b')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == b',' {
            out.push(Tok::Comma);
            i += 1;
        } else if body[i..].starts_with(":=") {
            out.push(Tok::Declare);
            i += 2;
        } else if c == b'=' {
            out.push(Tok::Assign);
            i += 1;
        } else if c == b'.'
            && (i + 1 >= b.len() || !is_ident(b[i + 1]) || b[i + 1].is_ascii_digit())
        {
            if i + 1 < b.len() && b[i + 1].is_ascii_digit() {
                let s = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Tok::Num(body[s..i].to_string()));
            } else {
                out.push(Tok::Dot);
                i += 1;
            }
        } else if c == b'.' {
            let s = i + 1;
            i += 1;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(Tok::Field(body[s..i].to_string()));
        } else if c == b'$' {
            let s = i;
            i += 1;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(Tok::Var(body[s..i].to_string()));
        } else if c == b'"' {
            let s = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            let raw = body.get(s..i.min(b.len())).unwrap_or("");
            let v = unquote(raw).ok_or_else(|| err(format!("bad string syntax: \"{raw}\"")))?;
            out.push(Tok::Str(v));
            i += 1;
        } else if c == b'`' {
            let s = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'`' {
                i += 1;
            }
            out.push(Tok::Str(
                body.get(s..i.min(b.len())).unwrap_or("").to_string(),
            ));
            i += 1;
        } else if c.is_ascii_digit()
            || ((c == b'-' || c == b'+')
                && i + 1 < b.len()
                && (b[i + 1].is_ascii_digit() || b[i + 1] == b'.'))
        {
            let s = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'.'
                    || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            out.push(Tok::Num(body[s..i].to_string()));
        } else if is_ident(c) {
            let s = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(Tok::Ident(body[s..i].to_string()));
        } else {
            let ch = body[i..].chars().next().unwrap_or('?');
            return Err(err(format!("unexpected {ch:?} in command")));
        }
    }
    Ok(out)
}

const FUNCS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "slice",
    "call",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "title",
    "toUpper",
    "toLower",
    "match",
    "reReplaceAll",
    "stripPort",
    "stripDomain",
    "parseDuration",
    "safeHtml",
    "pathPrefix",
    "externalURL",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "args",
    "tmpl",
    "graphLink",
    "tableLink",
    "toTime",
    "toDuration",
    "now",
];

struct Parser<'a> {
    name: &'a str,
    pieces: Vec<Piece>,
    pos: usize,
    vars: Vec<String>,
}

enum Stop {
    End,
    Else(Option<Vec<Tok>>),
    Eof,
}

impl<'a> Parser<'a> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> String {
        format!("template: {}:{line}: {msg}", self.name)
    }

    fn list(&mut self) -> Result<(Vec<TNode>, Stop, usize), String> {
        let mut nodes = Vec::new();
        while self.pos < self.pieces.len() {
            let idx = self.pos;
            self.pos += 1;
            let (body, line) = match &self.pieces[idx] {
                Piece::Text(t) => {
                    nodes.push(TNode::Text(t.clone()));
                    continue;
                }
                Piece::Action(b, l) => (b.clone(), *l),
            };
            let name = self.name;
            let toks = lex(&body, &|m| format!("template: {name}:{line}: {m}"))?;
            match toks.first() {
                None => return Err(self.err(line, "missing value for command")),
                Some(Tok::Ident(k)) if k == "end" => {
                    if toks.len() > 1 {
                        return Err(self.err(line, "unexpected token in end"));
                    }
                    return Ok((nodes, Stop::End, line));
                }
                Some(Tok::Ident(k)) if k == "else" => {
                    let rest = toks[1..].to_vec();
                    return Ok((nodes, Stop::Else((!rest.is_empty()).then_some(rest)), line));
                }
                Some(Tok::Ident(k)) if matches!(k.as_str(), "if" | "range" | "with") => {
                    let kw = k.clone();
                    let node = self.control(&kw, &toks[1..], line)?;
                    nodes.push(node);
                }
                Some(Tok::Ident(k))
                    if matches!(
                        k.as_str(),
                        "define" | "template" | "block" | "break" | "continue"
                    ) =>
                {
                    return Err(self.err(
                        line,
                        format!("{{{{{k}}}}} is not supported by Aether's templates"),
                    ));
                }
                _ => {
                    let p = self.pipe(&toks, line, true)?;
                    nodes.push(TNode::Action(p));
                }
            }
        }
        Ok((nodes, Stop::Eof, 0))
    }

    fn control(&mut self, kw: &str, toks: &[Tok], line: usize) -> Result<TNode, String> {
        let depth = self.vars.len();
        let pipe = self.pipe(toks, line, kw != "if")?;
        let (body, stop, stop_line) = self.list()?;
        let else_ = match stop {
            Stop::End => Vec::new(),
            Stop::Eof => return Err(self.err(line, "unexpected EOF")),
            Stop::Else(None) => {
                let (e, stop2, l2) = self.list()?;
                match stop2 {
                    Stop::End => e,
                    Stop::Eof => return Err(self.err(line, "unexpected EOF")),
                    Stop::Else(_) => return Err(self.err(l2, "expected end; found {{else}}")),
                }
            }
            Stop::Else(Some(chain)) => {
                // `else if ...` / `else with ...`: a nested control sharing our `end`.
                match chain.first() {
                    Some(Tok::Ident(k2))
                        if (k2 == "if" && kw == "if") || (k2 == "with" && kw == "with") =>
                    {
                        let k2 = k2.clone();
                        vec![self.control(&k2, &chain[1..], stop_line)?]
                    }
                    _ => return Err(self.err(stop_line, "unexpected token in else")),
                }
            }
        };
        self.vars.truncate(depth);
        Ok(match kw {
            "if" => TNode::If(pipe, body, else_),
            "range" => TNode::Range(pipe, body, else_),
            _ => TNode::With(pipe, body, else_),
        })
    }

    fn pipe(&mut self, toks: &[Tok], line: usize, allow_decl: bool) -> Result<Pipe, String> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = toks;
        // `$x :=`, `$x =`, `$i, $e :=`
        let decl_end = toks
            .iter()
            .position(|t| matches!(t, Tok::Declare | Tok::Assign));
        if let Some(d) = decl_end {
            let names = &toks[..d];
            let ok = !names.is_empty()
                && names.iter().enumerate().all(|(i, t)| {
                    if i % 2 == 0 {
                        matches!(t, Tok::Var(_))
                    } else {
                        *t == Tok::Comma
                    }
                });
            if ok {
                for t in names {
                    if let Tok::Var(v) = t {
                        decl.push(v.clone());
                    }
                }
                assign = toks[d] == Tok::Assign;
                rest = &toks[d + 1..];
                if decl.len() > 2 || (decl.len() == 2 && !allow_decl) {
                    return Err(self.err(line, "too many declarations in command"));
                }
                if assign {
                    for v in &decl {
                        if !self.vars.contains(v) {
                            return Err(self.err(line, format!("undefined variable \"{v}\"")));
                        }
                    }
                }
            }
        }
        let cmds = self.commands(rest, line)?;
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn commands(&mut self, toks: &[Tok], line: usize) -> Result<Vec<Vec<Arg>>, String> {
        let mut cmds = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err(self.err(line, "missing command"));
                    }
                    cmds.push(std::mem::take(&mut cur));
                    i += 1;
                }
                _ => {
                    let (arg, next) = self.operand(toks, i, line)?;
                    cur.push(arg);
                    i = next;
                }
            }
        }
        if cur.is_empty() {
            return Err(self.err(line, "missing value for command"));
        }
        cmds.push(cur);
        Ok(cmds)
    }

    fn fields(toks: &[Tok], mut i: usize) -> (Vec<String>, usize) {
        let mut f = Vec::new();
        while let Some(Tok::Field(n)) = toks.get(i) {
            f.push(n.clone());
            i += 1;
        }
        (f, i)
    }

    fn operand(&mut self, toks: &[Tok], i: usize, line: usize) -> Result<(Arg, usize), String> {
        Ok(match &toks[i] {
            Tok::Dot => (Arg::Dot, i + 1),
            Tok::Field(_) => {
                let (f, n) = Self::fields(toks, i);
                (Arg::Field(f), n)
            }
            Tok::Var(v) => {
                if !self.vars.contains(v) && v != "$" {
                    return Err(self.err(line, format!("undefined variable \"{v}\"")));
                }
                let (f, n) = Self::fields(toks, i + 1);
                (Arg::Var(v.clone(), f), n)
            }
            Tok::Str(s) => (Arg::Lit(Value::Str(s.clone())), i + 1),
            Tok::Num(s) => {
                let v = if let Ok(n) = s.parse::<i64>() {
                    Value::Int(n)
                } else if let Some(h) = s
                    .strip_prefix("0x")
                    .and_then(|h| i64::from_str_radix(h, 16).ok())
                {
                    Value::Int(h)
                } else if let Ok(f) = s.parse::<f64>() {
                    Value::Float(f)
                } else {
                    return Err(self.err(line, format!("bad number syntax: \"{s}\"")));
                };
                (Arg::Lit(v), i + 1)
            }
            Tok::Ident(k) => match k.as_str() {
                "true" => (Arg::Lit(Value::Bool(true)), i + 1),
                "false" => (Arg::Lit(Value::Bool(false)), i + 1),
                "nil" => (Arg::Lit(Value::Nil), i + 1),
                f if FUNCS.contains(&f) => (Arg::Func(f.to_string()), i + 1),
                f => return Err(self.err(line, format!("function \"{f}\" not defined"))),
            },
            Tok::LParen => {
                let mut depth = 0;
                let mut j = i;
                loop {
                    match toks.get(j) {
                        Some(Tok::LParen) => depth += 1,
                        Some(Tok::RParen) => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err(self.err(line, "unclosed left paren")),
                    }
                    j += 1;
                }
                let inner = self.pipe(&toks[i + 1..j], line, false)?;
                let (f, n) = Self::fields(toks, j + 1);
                (Arg::Sub(Box::new(inner), f), n)
            }
            Tok::RParen => return Err(self.err(line, "unexpected right paren")),
            t => return Err(self.err(line, format!("unexpected {t:?} in operand"))),
        })
    }
}

impl Template {
    /// Parses `text` (Go template syntax) under `name`; errors read like Go's
    /// (`template: NAME:LINE: ...`).
    pub fn parse(name: &str, text: &str) -> Result<Template, String> {
        let pieces = split(name, text)?;
        let mut p = Parser {
            name,
            pieces,
            pos: 0,
            vars: vec!["$".to_string()],
        };
        let (nodes, stop, line) = p.list()?;
        match stop {
            Stop::Eof => Ok(Template {
                name: name.to_string(),
                nodes,
            }),
            Stop::End => Err(p.err(line, "unexpected {{end}}")),
            Stop::Else(_) => Err(p.err(line, "unexpected {{else}}")),
        }
    }

    /// Executes the template over alert data.
    pub fn execute(&self, data: &AlertData) -> Result<String, String> {
        let mut ex = Exec {
            name: &self.name,
            data,
            vars: Vec::new(),
        };
        let root = Dot::Root;
        ex.vars.push(("$".into(), Value::Nil));
        let mut out = String::new();
        ex.walk(&self.nodes, &root, &mut out)?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Execution.

/// The current dot: the root data or a value.
enum Dot {
    Root,
    V(Value),
}

struct Exec<'a> {
    name: &'a str,
    data: &'a AlertData,
    vars: Vec<(String, Value)>,
}

impl Exec<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> String {
        format!(
            "template: {}: executing \"{}\": {msg}",
            self.name, self.name
        )
    }

    fn root_field(&self, f: &str) -> Result<Value, String> {
        Ok(match f {
            "Labels" => Value::Map(self.data.labels.clone()),
            "ExternalLabels" => Value::Map(self.data.external_labels.clone()),
            "ExternalURL" => Value::Str(self.data.external_url.clone()),
            "Value" => Value::Float(self.data.value),
            _ => {
                return Err(self.err(format!(
                    "can't evaluate field {f} in type template.AlertTemplateData"
                )))
            }
        })
    }

    fn field(&self, v: Value, f: &str) -> Result<Value, String> {
        match v {
            Value::Map(m) => Ok(Value::Str(m.get(f).cloned().unwrap_or_default())),
            Value::Nil => Err(self.err(format!("nil pointer evaluating interface {{}}.{f}"))),
            other => Err(self.err(format!(
                "can't evaluate field {f} in type {}",
                other.go_type()
            ))),
        }
    }

    fn walk(&mut self, nodes: &[TNode], dot: &Dot, out: &mut String) -> Result<(), String> {
        for n in nodes {
            match n {
                TNode::Text(t) => out.push_str(t),
                TNode::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        out.push_str(&v.print());
                    }
                }
                TNode::If(p, then, else_) => {
                    let depth = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = if v.truth() {
                        self.walk(then, dot, out)
                    } else {
                        self.walk(else_, dot, out)
                    };
                    self.vars.truncate(depth);
                    r?;
                }
                TNode::With(p, body, else_) => {
                    let depth = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = if v.truth() {
                        self.walk(body, &Dot::V(v), out)
                    } else {
                        self.walk(else_, dot, out)
                    };
                    self.vars.truncate(depth);
                    r?;
                }
                TNode::Range(p, body, else_) => {
                    let depth = self.vars.len();
                    let decl = p.decl.clone();
                    let bare = Pipe {
                        decl: Vec::new(),
                        assign: false,
                        cmds: p.cmds.clone(),
                    };
                    let v = self.pipe(&bare, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Map(m) => m
                            .into_iter()
                            .map(|(k, v)| (Value::Str(k), Value::Str(v)))
                            .collect(),
                        Value::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i as i64), v))
                            .collect(),
                        Value::Int(n) => (0..n.max(0))
                            .map(|i| (Value::Int(i), Value::Int(i)))
                            .collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(
                                self.err(format!("range can't iterate over {}", other.print()))
                            )
                        }
                    };
                    if items.is_empty() {
                        self.walk(else_, dot, out)?;
                    }
                    for (k, v) in items {
                        let d = self.vars.len();
                        match decl.as_slice() {
                            [e] => self.vars.push((e.clone(), v.clone())),
                            [i, e] => {
                                self.vars.push((i.clone(), k));
                                self.vars.push((e.clone(), v.clone()));
                            }
                            _ => {}
                        }
                        self.walk(body, &Dot::V(v), out)?;
                        self.vars.truncate(d);
                    }
                    self.vars.truncate(depth);
                }
            }
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Dot) -> Result<Value, String> {
        let mut last: Option<Value> = None;
        for cmd in &p.cmds {
            last = Some(self.command(cmd, dot, last)?);
        }
        let v = last.unwrap_or(Value::Nil);
        for name in &p.decl {
            if p.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Dot) -> Result<Value, String> {
        match a {
            Arg::Dot => Ok(match dot {
                Dot::Root => Value::Nil,
                Dot::V(v) => v.clone(),
            }),
            Arg::Field(fs) => {
                let mut it = fs.iter();
                let mut v = match (dot, it.next()) {
                    (Dot::Root, Some(f)) => self.root_field(f)?,
                    (Dot::V(v), Some(f)) => self.field(v.clone(), f)?,
                    (_, None) => Value::Nil,
                };
                for f in it {
                    v = self.field(v, f)?;
                }
                Ok(v)
            }
            Arg::Var(name, fs) => {
                let mut v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.err(format!("undefined variable: {name}")))?;
                for f in fs {
                    v = self.field(v, f)?;
                }
                Ok(v)
            }
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Func(f) => self.call(f, Vec::new()),
            Arg::Sub(p, fs) => {
                let depth = self.vars.len();
                let mut v = self.pipe(p, dot)?;
                self.vars.truncate(depth);
                for f in fs {
                    v = self.field(v, f)?;
                }
                Ok(v)
            }
        }
    }

    fn command(&mut self, cmd: &[Arg], dot: &Dot, piped: Option<Value>) -> Result<Value, String> {
        if let Some(Arg::Func(f)) = cmd.first() {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(f, args);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(self.err("can't give argument to non-function"));
        }
        self.arg(&cmd[0], dot)
    }

    fn call(&self, f: &str, args: Vec<Value>) -> Result<Value, String> {
        call_func(f, args).map_err(|e| self.err(format!("error calling {f}: {e}")))
    }
}

fn want(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("wrong number of args: want {n} got {}", args.len()));
    }
    Ok(())
}

fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .or_else(|_| match s.trim() {
                "+Inf" | "Inf" | "inf" => Ok(f64::INFINITY),
                "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => Err(()),
            })
            .map_err(|_| {
                format!(
                    "strconv.ParseFloat: parsing {}: invalid syntax",
                    model::go_quote(s)
                )
            }),
        other => Err(format!("can't convert {} to float", other.go_type())),
    }
}

fn to_str(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.go_type()
        )),
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (x, y) = (to_float(a)?, to_float(b)?);
            x.partial_cmp(&y)
                .ok_or_else(|| "incomparable values (NaN)".to_string())
        }
        _ => Err("incompatible types for comparison".into()),
    }
}

fn call_func(f: &str, args: Vec<Value>) -> Result<Value, String> {
    use std::cmp::Ordering;
    let s = |v: String| Ok(Value::Str(v));
    match f {
        "and" | "or" => {
            if args.is_empty() {
                return Err("wrong number of args".into());
            }
            let n = args.len();
            for (i, a) in args.into_iter().enumerate() {
                if (f == "and" && !a.truth()) || (f == "or" && a.truth()) || i == n - 1 {
                    return Ok(a);
                }
            }
            Ok(Value::Nil)
        }
        "not" => {
            want(&args, 1)?;
            Ok(Value::Bool(!args[0].truth()))
        }
        "len" => {
            want(&args, 1)?;
            Ok(Value::Int(match &args[0] {
                Value::Str(x) => x.len(),
                Value::Map(m) => m.len(),
                Value::List(l) => l.len(),
                other => return Err(format!("len of type {}", other.go_type())),
            } as i64))
        }
        "index" => {
            if args.is_empty() {
                return Err("wrong number of args".into());
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Value::Map(m), Value::Str(k)) => {
                        Value::Str(m.get(k).cloned().unwrap_or_default())
                    }
                    (Value::List(l), Value::Int(i)) => l
                        .get(usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?)
                        .cloned()
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    _ => return Err(format!("can't index item of type {}", v.go_type())),
                };
            }
            Ok(v)
        }
        "print" => {
            let mut out = String::new();
            for (i, a) in args.iter().enumerate() {
                let is_str = matches!(a, Value::Str(_));
                if i > 0 && !is_str && !matches!(args[i - 1], Value::Str(_)) {
                    out.push(' ');
                }
                out.push_str(&a.print());
            }
            s(out)
        }
        "println" => {
            let parts: Vec<String> = args.iter().map(Value::print).collect();
            s(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            if args.is_empty() {
                return Err("wrong number of args".into());
            }
            let fmt = to_str(&args[0])?;
            s(sprintf(&fmt, &args[1..]))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for b in &args[1..] {
                if compare(&args[0], b)? == Ordering::Equal {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(&args, 2)?;
            let o = compare(&args[0], &args[1])?;
            Ok(Value::Bool(match f {
                "ne" => o != Ordering::Equal,
                "lt" => o == Ordering::Less,
                "le" => o != Ordering::Greater,
                "gt" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }))
        }
        "html" | "safeHtml" if f == "html" => {
            let t: String = args.iter().map(Value::print).collect();
            s(t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;"))
        }
        "safeHtml" => {
            want(&args, 1)?;
            s(to_str(&args[0])?)
        }
        "js" => {
            let t: String = args.iter().map(Value::print).collect();
            s(t.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('"', "\\\"")
                .replace('<', "\\u003C")
                .replace('>', "\\u003E"))
        }
        "urlquery" => {
            let t: String = args.iter().map(Value::print).collect();
            let mut out = String::new();
            for b in t.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    out.push(b as char);
                } else if b == b' ' {
                    out.push('+');
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            s(out)
        }
        "humanize" => {
            want(&args, 1)?;
            s(humanize(to_float(&args[0])?))
        }
        "humanize1024" => {
            want(&args, 1)?;
            s(humanize1024(to_float(&args[0])?))
        }
        "humanizeDuration" => {
            want(&args, 1)?;
            s(humanize_duration(to_float(&args[0])?))
        }
        "humanizePercentage" => {
            want(&args, 1)?;
            s(format!("{}%", format_g(to_float(&args[0])? * 100.0, 4)))
        }
        "humanizeTimestamp" => {
            want(&args, 1)?;
            s(humanize_timestamp(to_float(&args[0])?))
        }
        "title" => {
            want(&args, 1)?;
            s(title(&to_str(&args[0])?))
        }
        "toUpper" => {
            want(&args, 1)?;
            s(to_str(&args[0])?.to_uppercase())
        }
        "toLower" => {
            want(&args, 1)?;
            s(to_str(&args[0])?.to_lowercase())
        }
        "match" => {
            want(&args, 2)?;
            let re = regex::Regex::new(&to_str(&args[0])?).map_err(|e| e.to_string())?;
            Ok(Value::Bool(re.is_match(&to_str(&args[1])?)))
        }
        "reReplaceAll" => {
            want(&args, 3)?;
            let re = regex::Regex::new(&to_str(&args[0])?).map_err(|e| e.to_string())?;
            let repl = to_str(&args[1])?;
            s(re.replace_all(&to_str(&args[2])?, repl.as_str())
                .into_owned())
        }
        "stripPort" => {
            want(&args, 1)?;
            let hp = to_str(&args[0])?;
            s(match hp.rsplit_once(':') {
                Some((h, _)) if h.starts_with('[') && h.ends_with(']') => {
                    h[1..h.len() - 1].to_string()
                }
                Some((h, _)) if !h.contains(':') => h.to_string(),
                _ => hp,
            })
        }
        "stripDomain" => {
            want(&args, 1)?;
            let hp = to_str(&args[0])?;
            let (host, port) = match hp.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), format!(":{p}")),
                _ => (hp.clone(), String::new()),
            };
            if host.parse::<std::net::IpAddr>().is_ok() {
                return s(hp);
            }
            s(format!("{}{port}", host.split('.').next().unwrap_or("")))
        }
        "parseDuration" => {
            want(&args, 1)?;
            let t = to_str(&args[0])?;
            let d = crate::rulefile::parse_prom_duration(&t)
                .ok_or_else(|| format!("not a valid duration string: {t:?}"))?;
            Ok(Value::Float(d.as_secs_f64()))
        }
        "pathPrefix" | "externalURL" => s(String::new()),
        "query" | "first" | "label" | "value" | "strvalue" | "sortByLabel" | "tmpl"
        | "graphLink" | "tableLink" | "args" | "toTime" | "toDuration" | "now" | "slice"
        | "call" => Err(format!(
            "the template function {f:?} is not supported by the Aether ruler"
        )),
        other => Err(format!("function {other:?} not defined")),
    }
}

// ---------------------------------------------------------------------------
// Prometheus's humanize functions and Go's number formats.

/// Go's `%.{prec}g`.
pub fn format_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let nd = digits.len() as i32;
    let dp = if v == 0.0 { 1 } else { exp + 1 };
    let mut eprec = prec as i32;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let sign = if v.is_sign_negative() && v != 0.0 {
        "-"
    } else {
        ""
    };
    let x = dp - 1;
    if x < -4 || x >= eprec {
        let m = if nd > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.to_string()
        };
        return format!("{sign}{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    }
    let body = if dp <= 0 {
        format!("0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    };
    format!("{sign}{body}")
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits (1234567 -> `1.235M`).
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", format_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes (`ki`, `Mi`, ...).
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus's `humanizeDuration` (seconds): `1d 2h 3m 4s`, `1.5s`, `500ms`.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {mins}m {secs}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {mins}m {secs}s");
        }
        if mins != 0 {
            return format!("{sign}{mins}m {secs}s");
        }
        return format!("{sign}{}s", format_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, 4))
}

/// Prometheus's `humanizeTimestamp` (Unix seconds): Go's `time.Time.String()` in
/// UTC, e.g. `2020-01-01 00:00:00.5 +0000 UTC`.
pub fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    // Prometheus goes through model.Time: nanoseconds truncated to milliseconds.
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return format_g(v, 4);
    }
    let ms = (ns as i64) / 1_000_000;
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
    let Some(t) = chrono::DateTime::from_timestamp(ms.div_euclid(1000), nanos) else {
        return format_g(v, 4);
    };
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Go's `strings.Title`.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %q %d %f %F %e %E %g %G
/// %x %X %t %%`, with flags `-+0 #`, width and precision.
pub fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut argi = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = it.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argi += 1;
        let bad = || format!("%!{verb}({}={})", arg.go_type(), arg.print());
        let num_sign = |s: String, neg: bool| {
            if neg {
                s
            } else if plus {
                format!("+{s}")
            } else if space {
                format!(" {s}")
            } else {
                s
            }
        };
        let body = match (verb, arg) {
            ('s' | 'v', _) => {
                let t = arg.print();
                match (verb, prec) {
                    ('s', Some(p)) => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            ('q', Value::Str(t)) => model::go_quote(t),
            ('t', Value::Bool(b)) => b.to_string(),
            ('d', Value::Int(i)) => num_sign(i.to_string(), *i < 0),
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('X', Value::Int(i)) => format!("{i:X}"),
            ('x', Value::Str(t)) => t.bytes().map(|b| format!("{b:02x}")).collect(),
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Int(_) | Value::Float(_)) => {
                let v = to_float(arg).unwrap_or(f64::NAN);
                let t = if v.is_nan() {
                    "NaN".to_string()
                } else if v.is_infinite() {
                    if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
                } else {
                    match verb {
                        'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), v),
                        'e' | 'E' => {
                            let t = format!("{:.*e}", prec.unwrap_or(6), v);
                            let (m, e) = t.split_once('e').unwrap_or((&t, "0"));
                            let e: i32 = e.parse().unwrap_or(0);
                            let t = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                            if verb == 'E' {
                                t.to_uppercase()
                            } else {
                                t
                            }
                        }
                        _ => {
                            let t = match prec {
                                Some(p) => format_g(v, p.max(1)),
                                None => model::format_go_float(v),
                            };
                            if verb == 'G' {
                                t.to_uppercase()
                            } else {
                                t
                            }
                        }
                    }
                };
                let neg = t.starts_with('-');
                if t.starts_with('+') {
                    t
                } else {
                    num_sign(t, neg)
                }
            }
            _ => bad(),
        };
        let w: usize = width.parse().unwrap_or(0);
        let n = body.chars().count();
        if n >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - n));
        } else if zero && !matches!(arg, Value::Str(_)) {
            let (sign, digits) = match body.chars().next() {
                Some(c @ ('-' | '+')) => (c.to_string(), &body[1..]),
                _ => (String::new(), body.as_str()),
            };
            out.push_str(&sign);
            out.push_str(&"0".repeat(w - n));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(w - n));
            out.push_str(&body);
        }
    }
    if argi < args.len() {
        let extra: Vec<String> = args[argi..]
            .iter()
            .map(|a| format!("{}={}", a.go_type(), a.print()))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, value: f64) -> String {
        let labels = BTreeMap::from([
            ("instance".to_string(), "host-1:9100".to_string()),
            ("job".to_string(), "thanos".to_string()),
        ]);
        let ext = BTreeMap::from([("replica".to_string(), "r0".to_string())]);
        let t = parse_alert_template("__alert_T", text).unwrap();
        t.execute(&AlertData {
            labels,
            external_labels: ext,
            external_url: "http://ruler".into(),
            value,
        })
        .unwrap()
    }

    #[test]
    fn humanize_as_prometheus() {
        // Prometheus's template_test.go cases.
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(0.1), "100m");
        assert_eq!(humanize(12345.0), "12.35k");
        assert_eq!(humanize(1.0), "1");
        assert_eq!(humanize(-1234567.0), "-1.235M");
        assert_eq!(humanize(0.000001), "1u");
        assert_eq!(humanize(f64::INFINITY), "+Inf");
        assert_eq!(humanize(f64::NAN), "NaN");
        assert_eq!(humanize(1e30), "1e+06Y");
        assert_eq!(humanize1024(1024.0), "1ki");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(0.5), "0.5");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.0), "1s");
        assert_eq!(humanize_duration(60.0), "1m 0s");
        assert_eq!(humanize_duration(3600.0), "1h 0m 0s");
        assert_eq!(humanize_duration(86400.0), "1d 0h 0m 0s");
        assert_eq!(
            humanize_duration(86400.0 + 3600.0 + 60.0 + 1.0),
            "1d 1h 1m 1s"
        );
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.1), "100ms");
        assert_eq!(humanize_duration(0.0001), "100us");
        assert_eq!(humanize_duration(-1.5), "-1.5s");
        assert_eq!(format!("{}%", format_g(0.1234567 * 100.0, 4)), "12.35%");
        assert_eq!(
            humanize_timestamp(1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(humanize_timestamp(0.0), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn format_g_like_go() {
        assert_eq!(format_g(1.5, 4), "1.5");
        assert_eq!(format_g(1234.0, 4), "1234");
        assert_eq!(format_g(12345.0, 4), "1.234e+04");
        assert_eq!(format_g(0.0001234, 4), "0.0001234");
        assert_eq!(format_g(0.00001234, 4), "1.234e-05");
        assert_eq!(format_g(100.0, 4), "100");
        assert_eq!(format_g(-2.0, 4), "-2");
    }

    #[test]
    fn alert_templates() {
        assert_eq!(
            expand("{{ $labels.instance }} down", 0.0),
            "host-1:9100 down"
        );
        assert_eq!(
            expand("{{ .Labels.job }}/{{ $externalLabels.replica }}", 0.0),
            "thanos/r0"
        );
        assert_eq!(expand("{{ $value }}", 1234567.0), "1.234567e+06");
        assert_eq!(expand("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(expand("{{ humanizePercentage $value }}", 0.5), "50%");
        assert_eq!(expand("{{ $labels.missing }}|", 0.0), "|");
        assert_eq!(expand("{{ printf \"%.2f\" $value }}", 1.23456), "1.23");
        assert_eq!(expand("{{ printf \"%s=%d\" \"a\" 3 }}", 0.0), "a=3");
        assert_eq!(
            expand("{{ if gt $value 1.0 }}high{{ else }}low{{ end }}", 2.0),
            "high"
        );
        assert_eq!(
            expand(
                "{{ if gt $value 1.0 }}high{{ else if gt $value 0.5 }}mid{{ else }}low{{ end }}",
                0.7
            ),
            "mid"
        );
        assert_eq!(
            expand(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            ),
            "instance=host-1:9100;job=thanos;"
        );
        assert_eq!(
            expand("{{ range .Labels }}[{{ . }}]{{ end }}", 0.0),
            "[host-1:9100][thanos]"
        );
        assert_eq!(
            expand(
                "{{ $labels.job | toUpper }} {{ \"ABC\" | toLower }} {{ title \"hello world\" }}",
                0.0
            ),
            "THANOS abc Hello World"
        );
        assert_eq!(
            expand("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", 0.0),
            "host-1"
        );
        assert_eq!(expand("{{ $labels.instance | stripPort }}", 0.0), "host-1");
        assert_eq!(
            expand("{{ with $labels.job }}job {{ . }}{{ end }}", 0.0),
            "job thanos"
        );
        assert_eq!(expand("a  {{- \"b\" -}}  c", 0.0), "abc");
        assert_eq!(expand("{{/* comment */}}x", 0.0), "x");
        assert_eq!(expand("{{ $x := 5 }}{{ $x }}", 0.0), "5");
        assert_eq!(expand("{{ humanizeDuration 3661 }}", 0.0), "1h 1m 1s");
        assert_eq!(expand("{{ humanize1024 2048 }}", 0.0), "2ki");
        assert_eq!(
            expand("{{ 1.5 | humanizeTimestamp }}", 0.0),
            "1970-01-01 00:00:01.5 +0000 UTC"
        );
        assert_eq!(
            expand("{{ (printf \"%s\" $labels.job) | toUpper }}", 0.0),
            "THANOS"
        );
        assert_eq!(expand("{{ if and (eq $labels.job \"thanos\") (match \"^host\" $labels.instance) }}y{{ end }}", 0.0), "y");
    }

    #[test]
    fn template_errors() {
        let e = parse_alert_template("__alert_X", "{{ $labels.instance ").unwrap_err();
        assert_eq!(e, "template: __alert_X:1: unclosed action");
        let e = parse_alert_template("__alert_X", "{{ nosuch }}").unwrap_err();
        assert_eq!(e, "template: __alert_X:1: function \"nosuch\" not defined");
        let e = parse_alert_template("__alert_X", "{{ if 1 }}").unwrap_err();
        assert_eq!(e, "template: __alert_X:1: unexpected EOF");
        let e = parse_alert_template("__alert_X", "{{ $nope }}").unwrap_err();
        assert_eq!(e, "template: __alert_X:1: undefined variable \"$nope\"");
        assert!(parse_alert_template("__alert_X", "{{ end }}").is_err());
        let out = expand_alert(
            "X",
            "{{ query \"up\" }}",
            &BTreeMap::new(),
            &BTreeMap::new(),
            "",
            0.0,
        );
        assert!(
            out.starts_with("<error expanding template: ") && out.contains("not supported"),
            "{out}"
        );
        let out = expand_alert(
            "X",
            "{{ humanize \"abc\" }}",
            &BTreeMap::new(),
            &BTreeMap::new(),
            "",
            0.0,
        );
        assert!(out.contains("error calling humanize"), "{out}");
    }
}
