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
impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Param::OptText(v.clone())
    }
}

/// Writes whose results are not needed, sent together. On SQLite they go as one
/// multi-statement string, one round trip to sqlx's SQLite worker thread instead of one per
/// statement (the cost that dominates a transition; see BENCHMARKS.md). On PostgreSQL, whose
/// extended protocol takes one statement at a time, they run one after the other. Each
/// statement numbers its own placeholders from `$1`.
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
        } else {
            for (s, params) in self.statements {
                bind_all(sqlx::query(&s), params).execute(&mut *conn).await?;
            }
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

/// Shifts every `$n` placeholder in `sql` by `offset`.
fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            out += &format!("${}", n + offset);
        } else {
            out.push(c);
        }
    }
    out
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
}
