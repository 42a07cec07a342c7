//! A small helper for dynamic `WHERE` clauses with numbered placeholders (`$1`, `$2`, …),
//! which both SQLite and PostgreSQL accept.

use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;
use sqlx::Any;

pub(crate) enum Value {
    Int(i64),
    Text(String),
}

#[derive(Default)]
pub(crate) struct Where {
    pub(crate) sql: String,
    values: Vec<Value>,
}

impl Where {
    /// Adds `AND {condition} ${n}`; `condition` ends with its operator, e.g. `at >=`.
    pub(crate) fn and(&mut self, condition: &str, value: Value) {
        self.values.push(value);
        self.sql += &format!(" AND {condition} ${}", self.values.len());
    }

    /// Adds `AND {column} IN (…)` for `values`; no values matches nothing.
    pub(crate) fn and_in(&mut self, column: &str, values: impl IntoIterator<Item = Value>) {
        let mut marks = Vec::new();
        for v in values {
            self.values.push(v);
            marks.push(format!("${}", self.values.len()));
        }
        if marks.is_empty() {
            self.sql += " AND 1 = 0";
        } else {
            self.sql += &format!(" AND {column} IN ({})", marks.join(", "));
        }
    }

    /// Adds `AND {template}` with its one `?` replaced by the next placeholder.
    pub(crate) fn and_with(&mut self, template: &str, value: Value) {
        self.values.push(value);
        self.sql += &format!(" AND {}", template.replacen('?', &format!("${}", self.values.len()), 1));
    }

    pub(crate) fn bind<'q, T>(
        self,
        mut query: QueryAs<'q, Any, T, AnyArguments<'q>>,
    ) -> QueryAs<'q, Any, T, AnyArguments<'q>> {
        for v in self.values {
            query = match v {
                Value::Int(i) => query.bind(i),
                Value::Text(s) => query.bind(s),
            };
        }
        query
    }
}

/// A value for [`Batch`].
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_owned())
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(v.clone())
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::OptInt(v)
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::OptText(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Param {
        Param::OptText(v)
    }
}

impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Param::OptText(v.clone())
    }
}

/// Writes whose results are not needed, sent together: one round trip instead of one per
/// statement (the cost that dominates a transition; see BENCHMARKS.md). On SQLite, one
/// multi-statement string with bound parameters to sqlx's SQLite worker thread. On
/// PostgreSQL, whose extended protocol binds one statement at a time, one simple-protocol
/// query with the values inlined as literals: integers as digits, text dollar-quoted with a
/// tag the value does not contain (so no value can end its literal), absent values as NULL.
/// Each statement numbers its own placeholders from `$1`.
pub(crate) struct Batch {
    sqlite: bool,
    statements: Vec<(String, Vec<Param>)>,
}

impl Batch {
    pub(crate) fn new(conn: &sqlx::AnyConnection) -> Batch {
        Batch { sqlite: conn.backend_name() == "SQLite", statements: Vec::new() }
    }

    pub(crate) fn push(&mut self, sql: &str, params: Vec<Param>) {
        self.statements.push((sql.to_owned(), params));
    }

    pub(crate) async fn run(self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        if self.sqlite {
            let mut sql = String::new();
            let mut all = Vec::new();
            for (s, params) in self.statements {
                sql += &renumber(&s, all.len());
                sql += ";\n";
                all.extend(params);
            }
            if !sql.is_empty() {
                bind_all(sqlx::query(&sql), all).execute(&mut *conn).await?;
            }
        } else if self.statements.len() == 1 {
            let (s, params) = self.statements.into_iter().next().expect("one statement");
            bind_all(sqlx::query(&s), params).execute(&mut *conn).await?;
        } else if !self.statements.is_empty() {
            let mut sql = String::new();
            for (s, params) in &self.statements {
                sql += &inline(s, params);
                sql += ";\n";
            }
            sqlx::Executor::execute(&mut *conn, sqlx::raw_sql(&sql)).await?;
        }
        Ok(())
    }
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, AnyArguments<'q>>,
    params: Vec<Param>,
) -> sqlx::query::Query<'q, Any, AnyArguments<'q>> {
    for p in params {
        q = match p {
            Param::Int(v) => q.bind(v),
            Param::Text(v) => q.bind(v),
            Param::OptInt(v) => q.bind(v),
            Param::OptText(v) => q.bind(v),
        };
    }
    q
}

/// Replaces every `$n` placeholder in `sql` by `f(n)`.
fn map_placeholders(sql: &str, mut f: impl FnMut(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as usize);
                chars.next();
            }
            out += &f(n);
        } else {
            out.push(c);
        }
    }
    out
}

/// Shifts every `$n` placeholder in `sql` by `offset`.
fn renumber(sql: &str, offset: usize) -> String {
    map_placeholders(sql, |n| format!("${}", n + offset))
}

/// A PostgreSQL literal for `text`: dollar-quoted with a tag that `text` does not contain.
fn dollar_quote(text: &str) -> String {
    let mut tag = "$q$".to_owned();
    let mut n = 0u32;
    // The literal ends at the first occurrence of the tag after the opening one, which must be
    // the closing one: none inside the text, none straddling the text's end.
    while format!("{text}{tag}").find(&tag) != Some(text.len()) {
        n += 1;
        tag = format!("$q{n}$");
    }
    format!("{tag}{text}{tag}")
}

/// `sql` with its `$n` placeholders replaced by `params` as PostgreSQL literals.
fn inline(sql: &str, params: &[Param]) -> String {
    map_placeholders(sql, |n| match params.get(n.wrapping_sub(1)) {
        Some(Param::Int(v)) | Some(Param::OptInt(Some(v))) => v.to_string(),
        Some(Param::Text(v)) | Some(Param::OptText(Some(v))) => dollar_quote(v),
        Some(Param::OptInt(None)) | Some(Param::OptText(None)) => "NULL".into(),
        // A statement naming a parameter it was not given: fail in the database, loudly.
        None => format!("${n}"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_shifted() {
        assert_eq!(
            super::renumber("UPDATE t SET a = $1 WHERE b = $12 AND c = '$x'", 3),
            "UPDATE t SET a = $4 WHERE b = $15 AND c = '$x'"
        );
    }

    #[test]
    fn inlined_values_cannot_leave_their_literal() {
        use super::Param;
        let sql = super::inline(
            "INSERT INTO t VALUES ($1, $2, $3, $4)",
            &[
                Param::Int(-7),
                Param::Text("it's $q$ a $q1$ trap$".into()),
                Param::OptText(None),
                Param::OptInt(Some(3)),
            ],
        );
        assert_eq!(sql, "INSERT INTO t VALUES (-7, $q2$it's $q$ a $q1$ trap$$q2$, NULL, 3)");
        // Every value, whatever it holds, sits between one opening and one closing tag.
        for v in ["", "$", "$$", "$q", "q$", "$q$", "a$q$b$q1$c$q2$", "'; DROP TABLE t; --"] {
            let lit = super::dollar_quote(v);
            let tag_end = lit[1..].find('$').unwrap() + 2;
            let tag = &lit[..tag_end];
            assert!(lit.ends_with(tag) && lit.len() >= 2 * tag.len());
            let inner = &lit[tag.len()..lit.len() - tag.len()];
            assert_eq!(inner, v);
            assert_eq!(lit[tag.len()..].find(tag), Some(v.len()), "{v:?} → {lit}");
        }
    }
}
