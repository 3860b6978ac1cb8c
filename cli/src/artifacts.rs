//! `runstore artifact put|get|list|bundle`: artifact bytes in and out,
//! verified against their hash (`artifact delete` is in `lifecycle.rs`).

use std::path::Path;
use std::process::ExitCode;

use runstore::{
    ArtifactInfo, ArtifactKey, ArtifactPath, ArtifactQuery, BundleRequest, Error, Phase,
    PutOptions, Result, RunId, Sha256Digest, Storage,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::output::Out;
use crate::paging::Cursors;

/// Who the CLI says wrote an artifact.
pub const CLI_CREATOR: &str = "runstore-cli";

/// `phase/path` as used by `artifact bundle`: the first segment is the phase.
pub fn split_phase_path(text: &str) -> Result<(Phase, ArtifactPath)> {
    let Some((phase, path)) = text.split_once('/') else {
        return Err(Error::invalid(
            "artifact",
            format!(
                "{} must be written phase/path, e.g. build/out/report.txt",
                runstore::text::shown(text)
            ),
        ));
    };
    Ok((Phase::new(phase)?, ArtifactPath::new(path)?))
}

fn info_line(info: &ArtifactInfo) -> String {
    format!(
        "{}/{}  {} bytes  {}  sha256 {}",
        info.key.phase, info.key.path, info.size, info.content_type, info.sha256
    )
}

/// `runstore artifact put RUN PHASE PATH FILE`.
pub async fn artifact_put(
    storage: &Storage,
    (run, phase, path): (&str, &str, &str),
    file: &Path,
    content_type: Option<String>,
    overwrite_token: Option<String>,
    out: &Out,
) -> Result<ExitCode> {
    let key = ArtifactKey::parse(run, phase, path)?;
    let mut options = PutOptions::default().created_by(CLI_CREATOR);
    if let Some(t) = content_type {
        options = options.content_type(t);
    }
    if let Some(t) = overwrite_token {
        options = options.overwrite_token(t.parse::<Sha256Digest>()?);
    }
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::invalid("file", format!("cannot open {}: {e}", file.display())))?;
    let written = storage.artifacts.put(&key, Box::new(f), options).await?;
    report_written(out, &written, "")
}

/// Prints a written artifact (JSON: `inserted` and the record; for humans:
/// stored or unchanged, then `noun` and the record) and succeeds.
fn report_written(
    out: &Out,
    written: &runstore::Written<runstore::ArtifactInfo>,
    noun: &str,
) -> Result<ExitCode> {
    let value = json!({"inserted": written.inserted, "artifact": written.record});
    out.result(&value, || {
        let verb = if written.inserted {
            "stored"
        } else {
            "unchanged:"
        };
        format!("{verb} {noun}{}", info_line(&written.record))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore artifact get RUN PHASE PATH [--out FILE]`.
pub async fn artifact_get(
    storage: &Storage,
    (run, phase, path): (&str, &str, &str),
    file: Option<&Path>,
    out: &Out,
) -> Result<ExitCode> {
    let key = ArtifactKey::parse(run, phase, path)?;
    let Some(file) = file else {
        if out.json {
            return Err(Error::invalid(
                "out",
                "with --json the bytes cannot go to stdout; give --out FILE",
            ));
        }
        let mut reader = storage.artifacts.get(&key).await?;
        // Spooled to an unnamed temp file and verified first: not one byte
        // of an artifact that fails its hash reaches stdout.
        let spool = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
        let mut spool = tokio::fs::File::from_std(spool);
        tokio::io::copy(&mut reader.body, &mut spool)
            .await
            .map_err(|e| Error::io(format!("reading artifact {key}"), e))?;
        use tokio::io::AsyncSeekExt;
        spool
            .rewind()
            .await
            .map_err(|e| Error::io("rewinding the temp file", e))?;
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut spool, &mut stdout)
            .await
            .map_err(|e| Error::io("writing to stdout", e))?;
        stdout
            .flush()
            .await
            .map_err(|e| Error::io("writing to stdout", e))?;
        return Ok(ExitCode::SUCCESS);
    };
    // Written beside the target, renamed only once the hash is verified, so
    // a corrupt artifact never leaves a plausible file behind.
    let mut reader = storage.artifacts.get(&key).await?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    let part = file.with_file_name(format!(".{name}.part"));
    let result = async {
        let mut f = tokio::fs::File::create(&part)
            .await
            .map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
        let n = tokio::io::copy(&mut reader.body, &mut f)
            .await
            .map_err(|e| Error::io(format!("reading artifact {key}"), e))?;
        f.sync_all()
            .await
            .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
        tokio::fs::rename(&part, file)
            .await
            .map_err(|e| Error::io(format!("renaming to {}", file.display()), e))?;
        Ok::<u64, Error>(n)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    let n = result?;
    let value =
        json!({"artifact": reader.info, "written_to": file.display().to_string(), "bytes": n});
    out.result(&value, || format!("wrote {n} bytes to {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore artifact list RUN [--phase P]`.
pub async fn artifact_list(
    storage: &Storage,
    run: &str,
    phase: Option<&str>,
    out: &Out,
) -> Result<ExitCode> {
    let mut query = ArtifactQuery::run(RunId::new(run)?).with_limit(500);
    if let Some(p) = phase {
        query = query.with_phase(Phase::new(p)?);
    }
    let mut list = out.list()?;
    let mut pages = Cursors::default();
    while let Some(cursor) = pages.next() {
        let page = storage
            .artifacts
            .list(query.clone().with_cursor(cursor))
            .await?;
        for info in &page.items {
            list.item(info, || info_line(info))?;
        }
        pages.after(page.next);
    }
    list.finish("no artifacts")?;
    Ok(ExitCode::SUCCESS)
}

/// `runstore artifact bundle RUN PATH MEMBER...`.
pub async fn artifact_bundle(
    storage: &Storage,
    run: &str,
    path: &str,
    members: &[String],
    out: &Out,
) -> Result<ExitCode> {
    let run_id = RunId::new(run)?;
    let (phase, path) = split_phase_path(path)?;
    let members = members
        .iter()
        .map(|m| split_phase_path(m))
        .collect::<Result<Vec<_>>>()?;
    let request = BundleRequest::new(run_id, phase, path, members)
        .with_options(PutOptions::default().created_by(CLI_CREATOR));
    let written = storage.artifacts.bundle(request).await?;
    report_written(out, &written, "bundle ")
}
