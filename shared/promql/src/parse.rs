//! Parsing a query: promql-parser, with its type-check messages worded as
//! Prometheus words them.
//!
//! promql-parser names value types `matrix`/`vector` and quotes function names
//! with `'`; Prometheus says `range vector`/`instant vector` (its
//! `DocumentedType`) and Go-quotes them (`call to function "rate"`), and calls
//! the parameter of `topk`/`quantile`/`count_values` the "aggregation
//! parameter". Positions (`1:6: parse error: `) are not available from the
//! parser and stay missing (README.md).

use promql_parser::parser::{self, Expr};

use crate::{Error, Result};

/// Parses `query`; a failure is an [`Error::Parse`] with Prometheus's wording.
pub fn parse(query: &str) -> Result<Expr> {
    parser::parse(query).map_err(|e| Error::Parse(prometheus_wording(&e)))
}

fn documented_type(t: &str) -> &str {
    match t {
        "matrix" => "range vector",
        "vector" => "instant vector",
        other => other,
    }
}

/// `expected type A in CONTEXT, got B` as Prometheus prints it; other messages as they are.
fn prometheus_wording(msg: &str) -> String {
    reword_type_error(msg).unwrap_or_else(|| msg.to_string())
}

fn reword_type_error(msg: &str) -> Option<String> {
    let (want, rest) = msg.strip_prefix("expected type ")?.split_once(" in ")?;
    let (context, got) = rest.rsplit_once(", got ")?;
    let context = match context
        .strip_prefix("call to function '")
        .and_then(|c| c.strip_suffix('\''))
    {
        Some(f) => format!("call to function {}", model::go_quote(f)),
        None if context == "aggregation expression" && want != "vector" => {
            "aggregation parameter".to_string()
        }
        None => context.to_string(),
    };
    Some(format!(
        "expected type {} in {context}, got {}",
        documented_type(want),
        documented_type(got)
    ))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::Error;

    #[test]
    fn type_errors_are_worded_as_prometheus() {
        for (q, want) in [
            (
                "rate(x)",
                r#"expected type range vector in call to function "rate", got instant vector"#,
            ),
            (
                "floor(1)",
                r#"expected type instant vector in call to function "floor", got scalar"#,
            ),
            (
                "topk(x, y)",
                "expected type scalar in aggregation parameter, got instant vector",
            ),
            (
                "sum(1)",
                "expected type instant vector in aggregation expression, got scalar",
            ),
            ("sum(", "unclosed left parenthesis"),
        ] {
            assert_eq!(parse(q).unwrap_err(), Error::Parse(want.into()), "{q}");
        }
        assert!(parse("sum by (job) (rate(x[5m]))").is_ok());
    }
}
