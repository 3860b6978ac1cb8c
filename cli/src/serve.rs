//! `runstore serve`: the HTTP API and web page of `runstore-server` on the
//! configured storage, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use runstore::{Error, Result, Storage};
use runstore_server::ServeOptions;

use crate::output::Out;

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `runstore serve [--listen ADDR] [--open-reads] [--max-upload BYTES]`.
pub async fn serve(
    storage: &Storage,
    listen: SocketAddr,
    open_reads: bool,
    max_upload: Option<u64>,
    out: &Out,
) -> Result<ExitCode> {
    let mut options = ServeOptions::from_env().open_reads(open_reads);
    if let Some(n) = max_upload {
        options = options.max_artifact_bytes(n);
    }
    options.check_listen(&listen)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format!("listening on {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let auth = match (&options.token, options.open_reads) {
        (None, _) => "no token: every request is allowed (loopback only)",
        (Some(_), false) => "a bearer token is needed for every request",
        (Some(_), true) => "a bearer token is needed for writes; reads are open",
    };
    // The line a script waits for (also with --json, on stderr).
    eprintln!("listening on http://{addr} ({auth})");
    let app = runstore_server::router(storage.clone(), options)?;
    runstore_server::serve(listener, app, stopped()).await?;
    out.result(&serde_json::json!({"stopped": addr.to_string()}), || {
        format!("stopped serving http://{addr}")
    })?;
    Ok(ExitCode::SUCCESS)
}
