//! What of a response may be stored, the stored form, and serving it (ETag, 304).

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, ETAG, IF_NONE_MATCH, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

/// A response as cached: status, headers (with its ETag) and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Status,
    Private,
    SetCookie,
    VaryStar,
    /// `Vary` names a header the key did not include (it is learned for the next requests).
    VaryUnknown,
    TooLarge,
    Trailers,
    BodyError,
}

/// The `Vary` names of a response (lower case), or `Err` for `Vary: *`.
pub(crate) fn vary_names(headers: &HeaderMap) -> Result<Vec<HeaderName>, NotStored> {
    let mut out = Vec::new();
    for v in headers.get_all(VARY) {
        let Ok(text) = v.to_str() else { return Err(NotStored::VaryStar) };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Err(NotStored::VaryStar);
            }
            match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(h) => out.push(h),
                Err(_) => return Err(NotStored::VaryStar),
            }
        }
    }
    Ok(out)
}

/// The header rules: a successful status, no `Set-Cookie`, no `Cache-Control: private`,
/// `no-store` or `no-cache`.
pub(crate) fn storable_head(status: StatusCode, headers: &HeaderMap) -> Result<(), NotStored> {
    if !matches!(status.as_u16(), 200 | 203 | 204) {
        return Err(NotStored::Status);
    }
    if headers.contains_key(SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    for v in headers.get_all(CACHE_CONTROL) {
        let text = v.to_str().unwrap_or("private").to_ascii_lowercase();
        if text.split(',').map(str::trim).any(|d| matches!(d, "private" | "no-store" | "no-cache")) {
            return Err(NotStored::Private);
        }
    }
    Ok(())
}

/// The body, buffered up to `cap` bytes: `Ok` with all of it, or `Err` with a body that
/// yields what was read and then the rest of the stream (never more than `cap` in memory).
pub(crate) async fn buffer(body: Body, cap: usize) -> Result<Bytes, (Body, NotStored)> {
    let mut body = body;
    let mut buf = BytesMut::new();
    loop {
        let Some(frame) = body.frame().await else { return Ok(buf.freeze()) };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cacheops-axum: a response body failed; passed through");
                let head = buf.freeze();
                return Err((Body::new(http_body_util::Full::new(head)), NotStored::BodyError));
            }
        };
        match frame.into_data() {
            Ok(data) => {
                if buf.len().saturating_add(data.len()) > cap {
                    let mut head = buf;
                    head.extend_from_slice(&data);
                    return Err((chain(head.freeze(), body), NotStored::TooLarge));
                }
                buf.extend_from_slice(&data);
            }
            Err(_trailers) => {
                // Trailers are not cached; the response passes through without them.
                return Err((Body::new(http_body_util::Full::new(buf.freeze())), NotStored::Trailers));
            }
        }
    }
}

/// `head` then the rest of `rest` (streamed, not buffered).
fn chain(head: Bytes, rest: Body) -> Body {
    Body::new(Chained { head: Some(head), rest })
}

/// One chunk already read, then the rest of a body.
struct Chained {
    head: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Chained {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Some(h) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(h))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }
}

/// Whether `content-length` already says the body is over `cap`.
pub(crate) fn declared_over(headers: &HeaderMap, cap: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
}

impl StoredResponse {
    /// The stored form: the response's headers plus an ETag (a weak one over the body when
    /// the response has none).
    pub(crate) fn new(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Self {
        // Hop-by-hop and length headers belong to one transfer, not to the stored response.
        let per_transfer = |k: &HeaderName| {
            [
                http::header::CONNECTION,
                http::header::TRANSFER_ENCODING,
                CONTENT_LENGTH,
                http::header::TE,
                http::header::TRAILER,
                http::header::UPGRADE,
            ]
            .contains(k)
                || k.as_str() == "keep-alive"
        };
        let mut out: Vec<(String, Vec<u8>)> = headers
            .iter()
            .filter(|(k, _)| !per_transfer(k))
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        if !headers.contains_key(ETAG) {
            let digest = sha1_smol::Sha1::from(&body[..]).digest().to_string();
            out.push((ETAG.as_str().to_owned(), format!("W/\"{digest}\"").into_bytes()));
        }
        StoredResponse { status: status.as_u16(), headers: out, body: body.to_vec() }
    }

    fn etag(&self) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == ETAG.as_str()).map(|(_, v)| v.as_slice())
    }

    /// The response for a request with these headers: the stored one, or `304 Not Modified`
    /// when its `If-None-Match` names the stored ETag.
    pub(crate) fn respond(&self, request: &HeaderMap) -> Response {
        let not_modified = self.etag().is_some_and(|tag| if_none_match(request, tag));
        let (status, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, Body::empty())
        } else {
            (StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK), Body::from(self.body.clone()))
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        for (k, v) in &self.headers {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) else {
                continue;
            };
            if not_modified && !keeps_on_304(&name) {
                continue;
            }
            res.headers_mut().append(name, value);
        }
        res
    }
}

/// Headers a 304 repeats (RFC 9110 §15.4.5).
fn keeps_on_304(name: &HeaderName) -> bool {
    [ETAG, CACHE_CONTROL, VARY, http::header::CONTENT_LOCATION, http::header::DATE, http::header::EXPIRES]
        .contains(name)
}

/// Weak comparison of `If-None-Match` with an entity tag (`*` matches any).
fn if_none_match(request: &HeaderMap, tag: &[u8]) -> bool {
    let strip = |t: &[u8]| -> Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
    let ours = strip(tag);
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|v| v.as_bytes().split(|b| *b == b',').map(|t| t.trim_ascii()).any(|t| t == b"*" || strip(t) == ours))
}
