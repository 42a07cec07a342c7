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
