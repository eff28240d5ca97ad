//! A YAML document as a tree of nodes that remember where they are (line and
//! column, 1-based, as Go's `yaml.v3` reports them), so that rule-file errors can
//! point at the offending value.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar: its text, whether it was a plain `null`/`~`/empty scalar.
    Scalar {
        value: String,
        null: bool,
        pos: Pos,
    },
    Seq(Vec<Node>, Pos),
    Map(Vec<(Node, Node)>, Pos),
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq(_, pos) | Node::Map(_, pos) => *pos,
        }
    }

    /// Go yaml's tag name of the node, for type errors.
    pub fn tag(&self) -> &'static str {
        match self {
            Node::Scalar { null: true, .. } => "!!null",
            Node::Scalar { value, .. } => {
                if value.parse::<i64>().is_ok() {
                    "!!int"
                } else if value.parse::<f64>().is_ok() {
                    "!!float"
                } else if value == "true" || value == "false" {
                    "!!bool"
                } else {
                    "!!str"
                }
            }
            Node::Seq(..) => "!!seq",
            Node::Map(..) => "!!map",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { null: true, .. })
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    docs: Vec<Node>,
    error: Option<String>,
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, key, ..)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let null = style == TScalarStyle::Plain
                    && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let value = if null { String::new() } else { value };
                self.push(
                    Node::Scalar {
                        value,
                        null,
                        pos: pos(&mark),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(Vec::new(), pos(&mark), anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack
                    .push(Frame::Map(Vec::new(), None, pos(&mark), anchor))
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, p, anchor)) = self.stack.pop() {
                    self.push(Node::Seq(items, p), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, p, anchor)) = self.stack.pop() {
                    // Go yaml places a mapping where its first key starts.
                    let p = entries.first().map(|(k, _)| k.pos()).unwrap_or(p);
                    self.push(Node::Map(entries, p), anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(n) => self.push(n, 0),
                None => self.error = Some(format!("unknown anchor {id}")),
            },
            _ => {}
        }
    }
}

/// Parses the first document of `text`. `Ok(None)` for an empty input. Errors read
/// like Go yaml's (`yaml: line N: ...`).
pub fn parse(text: &str) -> Result<Option<Node>, String> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut b, false)
        .map_err(|e| format!("yaml: line {}: {}", e.marker().line(), e.info()))?;
    if let Some(e) = b.error {
        return Err(format!("yaml: {e}"));
    }
    Ok(b.docs.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_go_yaml_positions() {
        let text = "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: up\n";
        let Some(Node::Map(top, p)) = parse(text).unwrap() else {
            panic!()
        };
        assert_eq!(p, Pos { line: 1, col: 1 });
        let Node::Seq(groups, _) = &top[0].1 else {
            panic!()
        };
        assert_eq!(groups[0].pos(), Pos { line: 2, col: 5 });
        let Node::Map(g, _) = &groups[0] else {
            panic!()
        };
        assert_eq!(g[0].1.pos(), Pos { line: 2, col: 11 });
    }

    #[test]
    fn nulls_and_errors() {
        let Some(Node::Map(m, _)) = parse("a:\nb: ~\nc: 'null'\n").unwrap() else {
            panic!()
        };
        assert!(m[0].1.is_null() && m[1].1.is_null() && !m[2].1.is_null());
        assert!(parse("groups: [\n").unwrap_err().starts_with("yaml: line "));
        assert_eq!(parse("").unwrap(), None);
    }
}
