//! `/v1/artifacts`: streamed upload and download, and a run's listing.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use runstore::{ArtifactKey, ArtifactQuery, Error, Phase, PutOptions, RunId, Sha256Digest};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::{ReaderStream, StreamReader};

use super::{ApiResult, RawQuery, ok, params, written};
use crate::AppState;
use crate::error::ApiError;

/// Fails the read once more than `left` bytes came: the store then aborts
/// the write, so an oversized upload leaves nothing behind.
struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Bounded<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let n = (buf.filled().len() - before) as u64;
            if n > self.left {
                self.exceeded.store(true, Ordering::SeqCst);
                return Poll::Ready(Err(std::io::Error::other("the upload is too large")));
            }
            self.left -= n;
        }
        polled
    }
}

fn key(run: String, phase: String, path: String) -> Result<ArtifactKey, Error> {
    ArtifactKey::parse(&run, &phase, &path)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Error> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::invalid(name.to_string(), "is not visible ASCII"))
        })
        .transpose()
}

/// `PUT /v1/artifacts/{run}/{phase}/{path…}`: the body is streamed into
/// the store. `Content-Type` is kept; replacing other bytes needs the
/// stored SHA-256 in `X-Runstore-Overwrite-Token`.
pub(crate) async fn put(
    State(s): State<AppState>,
    Path((run, phase, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let key = key(run, phase, path)?;
    let limit = s.options.max_artifact_bytes;
    if let Some(len) = header_str(&headers, "content-length")?
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n > limit)
    {
        return Err(ApiError::too_large(format!(
            "the upload has {len} bytes; this server takes at most {limit}"
        )));
    }
    let mut options = PutOptions::default();
    if let Some(t) = header_str(&headers, "content-type")? {
        options = options.content_type(t);
    }
    if let Some(t) = header_str(&headers, "x-runstore-overwrite-token")? {
        let token: Sha256Digest = t.parse()?;
        options = options.overwrite_token(token);
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = Bounded {
        inner: StreamReader::new(stream),
        left: limit,
        exceeded: exceeded.clone(),
    };
    match s
        .storage
        .artifacts
        .put(&key, Box::new(reader), options)
        .await
    {
        Ok(w) => written(&w),
        Err(_) if exceeded.load(Ordering::SeqCst) => Err(ApiError::too_large(format!(
            "the upload is larger than the {limit} bytes this server takes; nothing was stored"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/artifacts/{run}/{phase}/{path…}`: the bytes, streamed; the
/// store checks them against their hash as they go (a mismatch cuts the
/// response short). `X-Runstore-Sha256` carries the hash.
pub(crate) async fn get_one(
    State(s): State<AppState>,
    Path((run, phase, path)): Path<(String, String, String)>,
) -> ApiResult {
    let key = key(run, phase, path)?;
    let reader = s.storage.artifacts.get(&key).await?;
    let info = reader.info;
    let mut response = Body::from_stream(ReaderStream::new(reader.body)).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&info.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    if let Ok(v) = HeaderValue::from_str(&info.sha256.to_hex()) {
        h.insert("x-runstore-sha256", v);
    }
    Ok(response)
}

/// `GET /v1/runs/{id}/artifacts[?phase=P]`.
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult<Response> {
    let mut p = params(q);
    let mut query = ArtifactQuery::run(RunId::new(id)?)
        .with_limit(p.limit()?)
        .with_cursor(p.cursor());
    query.phase = p.take("phase").map(Phase::new).transpose()?;
    p.done()?;
    ok(&s.storage.artifacts.list(query).await?)
}
