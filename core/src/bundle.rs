//! Deterministic zip bundles of a run's artifacts.
//!
//! A bundle holds `manifest.json` first, then each member as
//! `phase/path`, sorted by `(phase, path)`, deflated, with the fixed time
//! 1980-01-01 00:00:00 and permissions `0644`. The same members therefore
//! give the same bytes and the same hash, in every backend.
//!
//! The manifest is canonical JSON:
//! `{"format":"runstore-bundle/1","members":[{"path":"phase/path","sha256":"…","size":N},…],"run_id":"…"}`.
//!
//! The zip is built in a temporary file (bounded memory whatever the size
//! of the members) by a blocking thread fed through a small channel, then
//! stored with [`ArtifactStore::put`].

use std::collections::BTreeSet;
use std::io::{Seek, Write};

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::artifact_path::{ArtifactKey, ArtifactPath};
use crate::artifacts::{ArtifactInfo, ArtifactStore, BundleRequest, ByteStream};
use crate::digest::canonical_json;
use crate::error::{Error, Result};
use crate::id::Phase;
use crate::written::Written;

/// Name of the manifest entry inside a bundle.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Format tag written into the manifest.
pub const MANIFEST_FORMAT: &str = "runstore-bundle/1";
/// Content type of a bundle when the request does not set one.
pub const BUNDLE_CONTENT_TYPE: &str = "application/zip";

const CHUNK: usize = 256 * 1024;

enum Piece {
    Start { name: String, large: bool },
    Data(Vec<u8>),
}

/// Builds the bundle described by `request` from `store` and stores it in
/// `store`. Nothing is written if a member is missing or unreadable.
pub async fn write_bundle<S: ArtifactStore + ?Sized>(
    store: &S,
    request: BundleRequest,
) -> Result<Written<ArtifactInfo>> {
    request.options.validate()?;
    if request.members.is_empty() {
        return Err(Error::invalid(
            "members",
            "a bundle needs at least one member",
        ));
    }
    let mut seen = BTreeSet::new();
    for (phase, path) in &request.members {
        if !seen.insert((phase.clone(), path.clone())) {
            return Err(Error::invalid(
                "members",
                format!("{phase}/{path} is listed twice"),
            ));
        }
    }
    if seen.contains(&(request.phase.clone(), request.path.clone())) {
        return Err(Error::invalid(
            "members",
            format!(
                "the bundle {}/{} cannot be one of its own members",
                request.phase, request.path
            ),
        ));
    }

    // Every member must exist before anything is written.
    let mut infos = Vec::with_capacity(seen.len());
    for (phase, path) in seen {
        let key = ArtifactKey::new(request.run_id.clone(), phase, path);
        infos.push(store.head(&key).await?);
    }

    let manifest = manifest_json(&request, &infos);
    let (tx, mut rx) = mpsc::channel::<Piece>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
        let file = tempfile::tempfile().map_err(|e| Error::io("creating a bundle temp file", e))?;
        let mut zip = zip::ZipWriter::new(file);
        let options = |large: bool| {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(0o644)
                .large_file(large)
        };
        let zip_err = |e: zip::result::ZipError| Error::backend("writing a bundle", Some(e.into()));
        zip.start_file(MANIFEST_NAME, options(false))
            .map_err(zip_err)?;
        zip.write_all(manifest.as_bytes())
            .map_err(|e| Error::io("writing a bundle", e))?;
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Start { name, large } => {
                    zip.start_file(name, options(large)).map_err(zip_err)?
                }
                Piece::Data(bytes) => zip
                    .write_all(&bytes)
                    .map_err(|e| Error::io("writing a bundle", e))?,
            }
        }
        let mut file = zip.finish().map_err(zip_err)?;
        file.flush().map_err(|e| Error::io("writing a bundle", e))?;
        file.rewind()
            .map_err(|e| Error::io("writing a bundle", e))?;
        Ok(file)
    });

    let fed = feed_members(store, &infos, &tx).await;
    drop(tx);
    let file = writer
        .await
        .map_err(|e| Error::backend("bundle writer thread failed", Some(e.into())))?;
    // The writer's own error explains more than the feeder's "stopped early".
    let file = file?;
    fed?;

    let mut options = request.options.clone();
    if options.content_type.is_none() {
        options.content_type = Some(BUNDLE_CONTENT_TYPE.to_string());
    }
    let key = ArtifactKey::new(request.run_id, request.phase, request.path);
    let body: ByteStream = Box::new(tokio::fs::File::from_std(file));
    store.put(&key, body, options).await
}

async fn feed_members<S: ArtifactStore + ?Sized>(
    store: &S,
    infos: &[ArtifactInfo],
    tx: &mpsc::Sender<Piece>,
) -> Result<()> {
    let closed = || Error::backend("bundle writer stopped early", None);
    for info in infos {
        let name = entry_name(&info.key.phase, &info.key.path);
        let large = info.size >= u64::from(u32::MAX);
        tx.send(Piece::Start { name, large })
            .await
            .map_err(|_| closed())?;
        let mut reader = store.get(&info.key).await?;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = reader
                .body
                .read(&mut buf)
                .await
                .map_err(|e| Error::io(format!("reading artifact {}", info.key), e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            tx.send(Piece::Data(buf)).await.map_err(|_| closed())?;
        }
    }
    Ok(())
}

/// The name of a member inside the zip: `phase/path`.
pub fn entry_name(phase: &Phase, path: &ArtifactPath) -> String {
    format!("{phase}/{path}")
}

fn manifest_json(request: &BundleRequest, infos: &[ArtifactInfo]) -> String {
    let members: Vec<_> = infos
        .iter()
        .map(|i| {
            json!({
                "path": entry_name(&i.key.phase, &i.key.path),
                "size": i.size,
                "sha256": i.sha256.to_hex(),
            })
        })
        .collect();
    canonical_json(&json!({
        "format": MANIFEST_FORMAT,
        "run_id": request.run_id.as_str(),
        "members": members,
    }))
}
