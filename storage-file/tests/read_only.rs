//! A root opened read-only (`FileConfig::read_only`): nothing created,
//! repaired or written; every write refused with `InvalidInput`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runstore_core::ErrorKind;
use runstore_file::{FileConfig, FileStore};

/// Every file under `root` but the lock files, with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with("locks") {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test]
async fn a_missing_root_is_not_found_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("typo");
    let err = FileStore::open(FileConfig::new(&root).with_read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("typo"), "{err}");
    assert!(!root.exists());
}

#[tokio::test]
async fn reads_work_and_every_write_is_refused_leaving_every_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(FileConfig::new(dir.path())).await.unwrap();
    let seeded = runstore_conformance::read_only::seed(&store.store_set())
        .await
        .unwrap();
    drop(store);
    // A torn last line, as a crash leaves it: a writable open cuts it, a
    // read-only one reads around it.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("logs/runs.ndjson"))
        .unwrap()
        .write_all(b"{\"op\":\"put\",\"ru")
        .unwrap();
    let before = snapshot(dir.path());

    let ro = FileStore::open(FileConfig::new(dir.path()).with_read_only(true))
        .await
        .unwrap();
    runstore_conformance::read_only::every_write_refused(&ro.store_set(), &seeded)
        .await
        .unwrap();
    let report = ro.check(false).await.unwrap();
    assert!(!report.findings.is_empty(), "the torn tail is reported");
    drop(ro);
    let after = snapshot(dir.path());
    let changed: Vec<&PathBuf> = after
        .keys()
        .chain(before.keys())
        .filter(|k| after.get(*k) != before.get(*k))
        .collect();
    assert!(changed.is_empty(), "files changed: {changed:?}");
}
