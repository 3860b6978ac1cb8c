//! Building and running SELECTs: numbered parameters, filter clauses, keyset
//! pages, and rows read as tuples then converted to records. Every list and
//! point read of the crate goes through here, so the paging SQL and the
//! row-to-record step are written once.

use runstore_core::Result;
use rusqlite::types::Value;
use rusqlite::{Connection, Params, Row, params_from_iter};

use crate::error::Ctx;

/// Row columns read by position into a tuple (rusqlite implements this for
/// tuples of `FromSql` values), converted to a record outside the row
/// callback so a bad value becomes a runstore error naming the row.
pub(crate) trait RawRow: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error> {}

impl<T> RawRow for T where T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error> {}

fn raw<R: RawRow>(row: &Row<'_>) -> rusqlite::Result<R> {
    R::try_from(row)
}

/// Runs `sql` and converts every row with `convert`; `what` names the
/// operation in errors.
pub(crate) fn query_rows<R: RawRow, T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    convert: impl FnMut(R) -> Result<T>,
    what: &str,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).ctx(what)?;
    let raws = stmt
        .query_map(params, raw::<R>)
        .and_then(|r| r.collect::<rusqlite::Result<Vec<R>>>())
        .ctx(what)?;
    raws.into_iter().map(convert).collect()
}

/// Direction of a keyset page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Ascending key columns; the cursor is the last key of the previous
    /// page, the next page starts after it.
    Asc,
    /// Descending key columns (newest first); the next page starts before
    /// the cursor.
    Desc,
}

/// A SELECT under construction: SQL text with numbered parameters `?n` and
/// their values, in order.
#[derive(Debug)]
pub(crate) struct Select {
    sql: String,
    args: Vec<Value>,
}

impl Select {
    /// `SELECT {columns} FROM {table} WHERE 1`, ready for `AND` clauses.
    pub(crate) fn from(columns: &str, table: &str) -> Select {
        Select {
            sql: format!("SELECT {columns} FROM {table} WHERE 1"),
            args: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder.
    fn param(&mut self, v: Value) -> String {
        self.args.push(v);
        format!("?{}", self.args.len())
    }

    /// Adds ` AND {column} {op} ?n`.
    pub(crate) fn and(&mut self, column: &str, op: &str, v: Value) -> &mut Select {
        let p = self.param(v);
        self.sql.push_str(&format!(" AND {column} {op} {p}"));
        self
    }

    /// Adds ` AND {column} = ?n` when `v` is set.
    pub(crate) fn and_eq_opt(&mut self, column: &str, v: Option<Value>) -> &mut Select {
        if let Some(v) = v {
            self.and(column, "=", v);
        }
        self
    }

    /// Adds ` AND {column} IN (?a, ?b, …)` when `values` is not empty.
    pub(crate) fn and_in(&mut self, column: &str, values: Vec<Value>) -> &mut Select {
        if values.is_empty() {
            return self;
        }
        let marks: Vec<String> = values.into_iter().map(|v| self.param(v)).collect();
        self.sql
            .push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
        self
    }

    /// Ends the query with one keyset page of `limit` rows (all when
    /// `None`) ordered by `keys`: after (ascending) or before (descending) the cursor's key
    /// values when there is a cursor. Several key columns compare as one
    /// row value, `(a, b) < (?, ?)`, which the matching index serves.
    pub(crate) fn page(
        mut self,
        order: Order,
        keys: &[&str],
        cursor: Option<Vec<Value>>,
        limit: Option<usize>,
    ) -> Select {
        let (cmp, dir) = match order {
            Order::Asc => (">", ""),
            Order::Desc => ("<", " DESC"),
        };
        if let Some(values) = cursor {
            let marks: Vec<String> = values.into_iter().map(|v| self.param(v)).collect();
            if keys.len() == 1 {
                self.sql
                    .push_str(&format!(" AND {} {cmp} {}", keys[0], marks[0]));
            } else {
                self.sql.push_str(&format!(
                    " AND ({}) {cmp} ({})",
                    keys.join(", "),
                    marks.join(", ")
                ));
            }
        }
        let order_by: Vec<String> = keys.iter().map(|k| format!("{k}{dir}")).collect();
        // A negative LIMIT is no limit in SQLite.
        let limit = self.param(Value::Integer(limit.map_or(-1, |l| l as i64)));
        self.sql
            .push_str(&format!(" ORDER BY {} LIMIT {limit}", order_by.join(", ")));
        self
    }

    /// The SQL text so far.
    #[cfg(test)]
    fn sql(&self) -> &str {
        &self.sql
    }

    /// Runs the query and converts every row.
    pub(crate) fn rows<R: RawRow, T>(
        self,
        conn: &Connection,
        convert: impl FnMut(R) -> Result<T>,
        what: &str,
    ) -> Result<Vec<T>> {
        query_rows(conn, &self.sql, params_from_iter(self.args), convert, what)
    }

    /// Runs a query of one value (a count).
    pub(crate) fn value<T: rusqlite::types::FromSql>(
        self,
        conn: &Connection,
        what: &str,
    ) -> Result<T> {
        conn.prepare_cached(&self.sql)
            .and_then(|mut s| s.query_row(params_from_iter(self.args), |r| r.get(0)))
            .ctx(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descending_page_with_cursor() {
        let mut s = Select::from("a, b", "t");
        s.and("w", "=", Value::Text("x".into()));
        let s = s.page(
            Order::Desc,
            &["time", "id"],
            Some(vec![Value::Integer(5), Value::Text("k".into())]),
            Some(3),
        );
        assert_eq!(
            s.sql(),
            "SELECT a, b FROM t WHERE 1 AND w = ?1 AND (time, id) < (?2, ?3) ORDER BY time DESC, id DESC LIMIT ?4"
        );
        assert_eq!(s.args.len(), 4);
    }

    #[test]
    fn ascending_page_of_one_key_without_cursor() {
        let s = Select::from("a", "t").page(Order::Asc, &["a"], None, Some(10));
        assert_eq!(s.sql(), "SELECT a FROM t WHERE 1 ORDER BY a LIMIT ?1");
        let s =
            Select::from("a", "t").page(Order::Asc, &["a"], Some(vec![Value::Integer(1)]), None);
        assert_eq!(
            s.sql(),
            "SELECT a FROM t WHERE 1 AND a > ?1 ORDER BY a LIMIT ?2"
        );
    }

    #[test]
    fn in_list_of_nothing_adds_nothing() {
        let mut s = Select::from("a", "t");
        s.and_in("s", Vec::new());
        assert_eq!(s.sql(), "SELECT a FROM t WHERE 1");
        s.and_in("s", vec![Value::Integer(1), Value::Integer(2)]);
        assert_eq!(s.sql(), "SELECT a FROM t WHERE 1 AND s IN (?1, ?2)");
    }
}
