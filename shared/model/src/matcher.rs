use regex::Regex;

use crate::Error;

/// The four kinds of label matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

/// A label matcher with Prometheus semantics: regular expressions are RE2-style and
/// fully anchored, and `.` matches a newline (`^(?s:pattern)$`).
///
/// A matcher sees a missing label as the empty string, so `{foo=""}` selects series
/// without `foo` and `{foo!=""}` series that have it.
#[derive(Debug, Clone)]
pub struct Matcher {
    kind: MatchType,
    name: String,
    value: String,
    re: Option<Regex>,
}

impl Matcher {
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, Error> {
        let value = value.into();
        let re = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|e| Error::BadRegex {
                    pattern: value.clone(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            kind,
            name: name.into(),
            value,
            re,
        })
    }

    /// `name="value"`; never fails.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            kind: MatchType::Equal,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    pub fn kind(&self) -> MatchType {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (the empty string for a missing label) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchType::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the matcher also matches a series that lacks the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For a regex matcher whose pattern is a plain alternation of literals
    /// (`a|b|c`), those literals; lets an index look them up directly.
    pub fn set_matches(&self) -> Option<Vec<String>> {
        if self.kind != MatchType::Regex {
            return None;
        }
        let special = |c: char| "\\.+*?()|[]{}^$".contains(c);
        let parts: Vec<String> = self.value.split('|').map(str::to_string).collect();
        if parts.iter().any(|p| p.chars().any(special)) {
            return None;
        }
        Some(parts)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.kind.as_str(),
            crate::go_quote(&self.value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_dotall() {
        let m = Matcher::new(MatchType::Regex, "a", "fo+").unwrap();
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches("foox"));
        let m = Matcher::new(MatchType::Regex, "a", "a.b").unwrap();
        assert!(m.matches("a\nb"));
        let m = Matcher::new(MatchType::Regex, "a", "a|b").unwrap();
        assert!(m.matches("a") && m.matches("b") && !m.matches("ab"));
    }

    #[test]
    fn empty_value_rules() {
        assert!(Matcher::equal("a", "").matches_empty());
        assert!(!Matcher::new(MatchType::NotEqual, "a", "")
            .unwrap()
            .matches_empty());
        assert!(Matcher::new(MatchType::Regex, "a", ".*")
            .unwrap()
            .matches_empty());
        assert!(!Matcher::new(MatchType::Regex, "a", ".+")
            .unwrap()
            .matches_empty());
        assert!(Matcher::new(MatchType::NotRegex, "a", "x")
            .unwrap()
            .matches_empty());
    }

    #[test]
    fn bad_regex_is_an_error() {
        let e = Matcher::new(MatchType::Regex, "a", "(").unwrap_err();
        assert!(e.to_string().contains("invalid regular expression"));
    }

    #[test]
    fn set_matches() {
        let m = Matcher::new(MatchType::Regex, "a", "x|y|zz").unwrap();
        assert_eq!(m.set_matches().unwrap(), vec!["x", "y", "zz"]);
        assert!(Matcher::new(MatchType::Regex, "a", "x.*")
            .unwrap()
            .set_matches()
            .is_none());
    }
}
