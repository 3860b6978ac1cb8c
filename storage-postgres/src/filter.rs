//! `WHERE` clauses built from the filters a query actually gives, so each
//! shape of query gets its own prepared statement and a plan that uses its
//! index.

use tokio_postgres::types::ToSql;

/// A boxed SQL parameter, for queries built from optional filters.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// Conditions joined with `AND`, and their parameters in placeholder
/// order.
#[derive(Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Where {
    /// Adds `clause`, whose `?`s stand for `values` in order (numbered
    /// `$n` after the parameters already added).
    pub(crate) fn and(&mut self, clause: &str, values: Vec<Param>) -> &mut Self {
        let mut out = String::with_capacity(clause.len() + 4);
        let mut values = values.into_iter();
        for c in clause.chars() {
            if c == '?'
                && let Some(v) = values.next()
            {
                self.params.push(v);
                out.push_str(&format!("${}", self.params.len()));
            } else {
                out.push(c);
            }
        }
        self.clauses.push(out);
        self
    }

    /// Adds `clause` with one parameter (see [`Where::and`]).
    pub(crate) fn and1(&mut self, clause: &str, value: Param) -> &mut Self {
        self.and(clause, vec![value])
    }

    /// `WHERE …`, or nothing without conditions.
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The parameters as the driver takes them.
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// `LIMIT n` for a page of `limit` items and one more (to know whether
/// another page follows).
///
/// A literal rather than a parameter, on purpose: it is a number checked
/// by `validate_limit`, never text, and with `LIMIT $n` the planner costs a
/// generic plan as if a tenth of the table were fetched, finds it dearer
/// than a custom plan and so plans the statement again on every call.
pub(crate) fn overfetch_limit(limit: usize) -> String {
    format!("LIMIT {}", limit.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_in_order() {
        let mut w = Where::default();
        assert_eq!(w.sql(), "");
        w.and1("a = ?", Box::new(1i32))
            .and("(b, c) < (?, ?)", vec![Box::new(2i64), Box::new("x")]);
        assert_eq!(w.sql(), "WHERE a = $1 AND (b, c) < ($2, $3)");
        assert_eq!(w.params().len(), 3);
        assert_eq!(overfetch_limit(50), "LIMIT 51");
    }
}
