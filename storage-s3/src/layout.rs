//! Where each object lives in the bucket (the layout is described in the
//! crate README):
//!
//! ```text
//! <prefix>/artifacts/<run_id>!/<phase>!/<path>   one small JSON record per artifact
//! <prefix>/blobs/<run_id>/<uuidv7>                the bytes, written once, never changed
//! ```
//!
//! The `!` after the run id and the phase makes the bucket's byte order of
//! record keys the contract's `(run_id, phase, path)` order, so one listing
//! with `start-after` pages artifacts in order. Without it, `/` (0x2F) would
//! sort after `-` and `.`, which ids may hold: run `a-b` would come before
//! run `a`. `!` (0x21) sorts below every byte an id may hold.

use object_store::path::Path;
use runstore_core::{ArtifactKey, ArtifactQuery, Error, Result, RunId};

/// Ends the run and phase segments of a record key.
const END: char = '!';

/// The keys of one store, under its prefix.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// `<prefix>/` or empty.
    root: String,
}

impl Layout {
    /// The layout under `prefix` (already validated: no empty, `.` or `..`
    /// segment).
    pub(crate) fn new(prefix: &str) -> Self {
        let root = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Layout { root }
    }

    /// The record of an artifact.
    pub(crate) fn record(&self, key: &ArtifactKey) -> Result<Path> {
        parse(format!(
            "{}artifacts/{}{END}/{}{END}/{}",
            self.root,
            key.run_id,
            key.phase,
            key.path.as_str()
        ))
    }

    /// A fresh, unique blob name for new bytes of `run`.
    pub(crate) fn new_blob(&self, run: &RunId) -> Result<Path> {
        parse(format!(
            "{}blobs/{run}/{}",
            self.root,
            uuid::Uuid::now_v7().as_simple()
        ))
    }

    /// Whether `blob` (as read from a record) is a blob of this store, so a
    /// damaged record cannot make a read or delete touch another object.
    pub(crate) fn blob(&self, blob: &str) -> Result<Path> {
        let rest = blob
            .strip_prefix(&self.root)
            .and_then(|r| r.strip_prefix("blobs/"))
            .filter(|r| {
                let mut parts = r.split('/');
                let run = parts.next().is_some_and(|p| RunId::new(p).is_ok());
                let name = parts
                    .next()
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_hexdigit()));
                run && name && parts.next().is_none()
            });
        match rest {
            Some(_) => parse(blob.to_string()),
            None => Err(Error::corrupt(
                "artifact record",
                format!(
                    "blob {} is not a blob of this store",
                    runstore_core::text::shown(blob)
                ),
            )),
        }
    }

    /// The listing prefix of a query: the narrowest folder that holds every
    /// record it can return.
    pub(crate) fn list_prefix(&self, query: &ArtifactQuery) -> Result<Path> {
        let mut s = format!("{}artifacts", self.root);
        if let Some(run) = &query.run_id {
            s.push_str(&format!("/{run}{END}"));
            if let Some(phase) = &query.phase {
                s.push_str(&format!("/{phase}{END}"));
            }
        }
        parse(s)
    }

    /// The artifact key of a listed record, or `None` for an object that is
    /// not a record of this layout (left by something else).
    pub(crate) fn key_of(&self, record: &Path) -> Option<ArtifactKey> {
        let rest = record
            .as_ref()
            .strip_prefix(&self.root)?
            .strip_prefix("artifacts/")?;
        let (run, rest) = rest.split_once(&format!("{END}/"))?;
        let (phase, path) = rest.split_once(&format!("{END}/"))?;
        let key = ArtifactKey::parse(run, phase, path).ok()?;
        Some(key)
    }
}

/// An object path taken verbatim: the key's segments were validated by core
/// (no empty, `.` or `..` segment, no control character), which is all
/// `Path::parse` refuses, so nothing is percent-encoded and the bucket's
/// byte order is the keys' byte order.
fn parse(s: String) -> Result<Path> {
    Path::parse(&s).map_err(|e| {
        Error::invalid(
            "artifact key",
            format!(
                "{} cannot be an object key: {e}",
                runstore_core::text::shown(&s)
            ),
        )
    })
}

/// For tests: the phase and run parts of keys sort like the contract says.
#[cfg(test)]
mod tests {
    use super::*;
    use runstore_core::Phase;

    fn key(run: &str, phase: &str, path: &str) -> ArtifactKey {
        ArtifactKey::parse(run, phase, path).unwrap()
    }

    #[test]
    fn record_keys_sort_in_run_phase_path_order() {
        let layout = Layout::new("p/q");
        let mut keys = vec![
            key("a", "x", "b"),
            key("a-b", "x", "a"),
            key("a", "x-y", "a"),
            key("a", "x", "a/b"),
            key("a", "x", "a-b"),
            key("a", "x", "a!"),
            key("a.b", "x", "a"),
            key("a", "x", "a b"),
            key("a", "x", "é"),
        ];
        keys.sort();
        let mut by_record = keys.clone();
        by_record.sort_by_key(|k| layout.record(k).unwrap().as_ref().to_string());
        assert_eq!(by_record, keys);
    }

    #[test]
    fn listed_records_give_back_their_key() {
        let layout = Layout::new("");
        let k = key("r-1", "build", "dir/a%20b#c.txt");
        let record = layout.record(&k).unwrap();
        assert_eq!(record.as_ref(), "artifacts/r-1!/build!/dir/a%20b#c.txt");
        assert_eq!(layout.key_of(&record), Some(k));
        assert_eq!(layout.key_of(&Path::parse("artifacts/x").unwrap()), None);
    }

    #[test]
    fn blobs_outside_the_store_are_refused() {
        let layout = Layout::new("p");
        let run = RunId::new("r1").unwrap();
        let blob = layout.new_blob(&run).unwrap();
        assert!(layout.blob(blob.as_ref()).is_ok());
        for bad in [
            "q/blobs/r1/00ff",
            "p/blobs/r1/../x",
            "p/artifacts/r1!/x",
            "p/blobs/r1/ab/cd",
        ] {
            assert!(layout.blob(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn list_prefix_narrows_to_run_and_phase() {
        let layout = Layout::new("");
        let run = RunId::new("r1").unwrap();
        let q = ArtifactQuery::run(run.clone()).with_phase(Phase::new("build").unwrap());
        assert_eq!(
            layout.list_prefix(&q).unwrap().as_ref(),
            "artifacts/r1!/build!"
        );
        assert_eq!(
            layout
                .list_prefix(&ArtifactQuery::run(run))
                .unwrap()
                .as_ref(),
            "artifacts/r1!"
        );
    }
}
