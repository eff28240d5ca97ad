//! `/api/v1/format_query`: a query pretty-printed as Prometheus 3 prints it.
//!
//! promql-parser ports Prometheus's prettifier (line breaks and indentation past
//! 100 characters, modifiers' order and spacing), and numbers print as Go's
//! `strconv.FormatFloat(v, 'f', -1, 64)` (shortest, no exponent), but for
//! positive infinity: Prometheus prints `+Inf`, promql-parser `Inf`. Such
//! literals are swapped for a leaf that prints `+Inf` before printing; the
//! printed query parses back to the same expression.

use promql_parser::parser::{Expr, VectorSelector};

/// The pretty-printed query, or its parse error.
pub fn format_query(query: &str) -> promql::Result<String> {
    let mut expr = promql::parse(query)?;
    plus_inf(&mut expr);
    Ok(expr.prettify())
}

fn plus_inf(e: &mut Expr) {
    match e {
        Expr::NumberLiteral(n) if n.val == f64::INFINITY => {
            *e = Expr::VectorSelector(VectorSelector::from("+Inf"));
        }
        Expr::Aggregate(a) => {
            plus_inf(&mut a.expr);
            if let Some(p) = &mut a.param {
                plus_inf(p);
            }
        }
        Expr::Unary(u) => plus_inf(&mut u.expr),
        Expr::Binary(b) => {
            plus_inf(&mut b.lhs);
            plus_inf(&mut b.rhs);
        }
        Expr::Paren(p) => plus_inf(&mut p.expr),
        Expr::Subquery(s) => plus_inf(&mut s.expr),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| plus_inf(a)),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::format_query;

    #[test]
    fn numbers_print_as_prometheus_3() {
        // Prometheus 3: strconv.FormatFloat(v, 'f', -1, 64).
        for (q, want) in [
            ("1e3 + 0x10 + 1.5", "1000 + 16 + 1.5"),
            ("1e-7 + 1e21", "0.0000001 + 1000000000000000000000"),
            ("x > Inf", "x > +Inf"),
            ("x > +Inf", "x > +Inf"),
            ("x < -Inf", "x < -Inf"),
            ("NaN", "NaN"),
            ("topk(Inf, x)", "topk(+Inf, x)"),
            ("clamp_max(x, inf)", "clamp_max(x, +Inf)"),
            (
                "label_replace(x, \"Inf\", \"Inf\", \"a\", \"Inf\")",
                "label_replace(x, \"Inf\", \"Inf\", \"a\", \"Inf\")",
            ),
        ] {
            assert_eq!(format_query(q).unwrap(), want, "{q}");
        }
        assert!(format_query("sum(").is_err());
    }
}
