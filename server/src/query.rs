//! Query-string parameters, parsed into the library's types with errors
//! that name the parameter.

use std::collections::BTreeMap;

use runstore::{Cursor, Error, Result, RunStatus, Timestamp, Version, WorkflowId};

/// The parameters of one request; each is taken once, and any left over is
/// an error (a typo must not be silently ignored).
pub(crate) struct Params(BTreeMap<String, String>);

impl Params {
    pub(crate) fn new(map: BTreeMap<String, String>) -> Self {
        Params(map)
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name).filter(|v| !v.is_empty())
    }

    pub(crate) fn limit(&mut self) -> Result<usize> {
        match self.take("limit") {
            None => Ok(runstore::DEFAULT_PAGE_LIMIT),
            Some(v) => {
                let n: usize = v
                    .parse()
                    .map_err(|_| Error::invalid("limit", format!("`{v}` is not a whole number")))?;
                runstore::validate_limit(n)
            }
        }
    }

    /// `order=asc|desc`: whether the listing is descending; `default`
    /// without the parameter.
    pub(crate) fn descending(&mut self, default: bool) -> Result<bool> {
        match self.take("order").as_deref() {
            None => Ok(default),
            Some("asc") => Ok(false),
            Some("desc") => Ok(true),
            Some(o) => Err(Error::invalid("order", format!("`{o}`: asc or desc"))),
        }
    }

    pub(crate) fn cursor(&mut self) -> Option<Cursor> {
        self.take("cursor").map(Cursor::from_string)
    }

    pub(crate) fn workflow(&mut self) -> Result<Option<WorkflowId>> {
        self.take("workflow").map(WorkflowId::new).transpose()
    }

    pub(crate) fn version(&mut self) -> Result<Option<Version>> {
        self.take("version").map(|v| version(&v)).transpose()
    }

    pub(crate) fn statuses(&mut self) -> Result<Vec<RunStatus>> {
        let Some(v) = self.take("status") else {
            return Ok(Vec::new());
        };
        v.split(',').map(status).collect()
    }

    pub(crate) fn time(&mut self, name: &str) -> Result<Option<Timestamp>> {
        self.take(name)
            .map(|v| {
                v.parse::<Timestamp>()
                    .map_err(|e| Error::invalid(name.to_string(), format!("`{v}`: {e}")))
            })
            .transpose()
    }

    /// Refuses parameters nobody took.
    pub(crate) fn done(self) -> Result<()> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(Error::invalid(
                "query",
                format!("unknown query parameter `{k}`"),
            )),
        }
    }
}

pub(crate) fn version(v: &str) -> Result<Version> {
    let n: u32 = v
        .parse()
        .map_err(|_| Error::invalid("version", format!("`{v}` is not a version number")))?;
    Version::new(n)
}

pub(crate) fn status(s: &str) -> Result<RunStatus> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        Error::invalid(
            "status",
            format!("`{s}` is not a status (pending, running, succeeded, failed, cancelled)"),
        )
    })
}
