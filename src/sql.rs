//! Quoting for SQL text, Postgres and DataFusion alike. Every identifier that reaches SQL text
//! goes through [`ident`], every string literal through [`literal`]; nothing else builds quotes.

/// Quote an identifier: `a"b` -> `"a""b"`. Any name, whatever its characters, stays one
/// identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A schema-qualified name: `auth`, `users` -> `"auth"."users"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// Quote a string literal: `it's` -> `'it''s'`. Only for text that cannot be a bind
/// parameter (DDL, COMMENT, DataFusion SQL built from names).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Identifiers joined by `, `, each with an optional alias prefix (`t.`).
pub fn ident_list(prefix: &str, names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{prefix}{}", ident(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_cannot_break_out() {
        assert_eq!(ident("users"), "\"users\"");
        assert_eq!(ident("a\"b; DROP"), "\"a\"\"b; DROP\"");
        assert_eq!(qualified("auth", "users"), "\"auth\".\"users\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(
            ident_list("t.", &["a".into(), "B c".into()]),
            "t.\"a\", t.\"B c\""
        );
    }
}
