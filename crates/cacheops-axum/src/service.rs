//! The tower layer and service: key the request, look it up, run the handler on a miss, store
//! what may be stored.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::response::{self, NotStored, StoredResponse};
use crate::view::CachedView;

/// The service a [`CachedView`] layer wraps around a handler or router.
#[derive(Debug, Clone)]
pub struct CachedViewService<S> {
    view: Arc<CachedView>,
    inner: S,
}

impl<S> Layer<S> for CachedView {
    type Service = CachedViewService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CachedViewService { view: Arc::new(self.clone()), inner }
    }
}

/// How a response was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    Miss,
    Bypass,
}

impl Served {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Served::Hit => "hit",
            Served::Miss => "miss",
            Served::Bypass => "bypass",
        })
    }
}

/// A response that is not stored, or a cache failure (with degrade off).
enum Outcome {
    Pass(Box<Response>),
    Cache(cacheops::Error),
}

impl From<cacheops::Error> for Outcome {
    fn from(e: cacheops::Error) -> Self {
        Outcome::Cache(e)
    }
}

impl<S> Service<Request<Body>> for CachedViewService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The ready service handles this request; a clone takes its place (tower's idiom).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let view = Arc::clone(&self.view);
        Box::pin(async move { Ok(serve(&view, inner, req).await) })
    }
}

async fn serve<S>(view: &CachedView, mut inner: S, req: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let (parts, body) = req.into_parts();
    let (args, keyed) = match view.key_args(&parts) {
        Ok(a) => a,
        Err(skip) => {
            tracing::trace!(?skip, view = view.name(), "cacheops-axum: not cached");
            let res = call(&mut inner, Request::from_parts(parts, body)).await;
            return mark(view, res, Served::Bypass);
        }
    };
    let request_headers = parts.headers.clone();
    let fallback = parts.clone();
    // A copy of what the handler rendered: it says the handler ran (a miss), and it is served
    // if the cache fails after the handler ran.
    let rendered: Arc<Mutex<Option<StoredResponse>>> = Arc::default();
    let keep = Arc::clone(&rendered);
    let mut handler = inner.clone();
    let path = parts.uri.path().to_owned();
    let f = view.cached_as(&path);
    let got = f
        .get_or_compute(&args, || async move {
            view.record_path(&path).await;
            let res = call(&mut handler, Request::from_parts(parts, body)).await;
            let stored = storable(view, res, &keyed).await?;
            *keep.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stored.clone());
            Ok(stored)
        })
        .await;
    match got {
        Ok(stored) => {
            let ran = rendered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some();
            let served = if ran { Served::Miss } else { Served::Hit };
            mark(view, stored.respond(&request_headers), served)
        }
        Err(Outcome::Pass(res)) => mark(view, *res, Served::Bypass),
        Err(Outcome::Cache(e)) => {
            tracing::warn!(error = %e, view = view.name(), "cacheops-axum: the cache failed; serving uncached");
            let kept = rendered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(stored) = kept {
                return mark(view, stored.respond(&request_headers), Served::Bypass);
            }
            // The cache failed before the handler ran: run it uncached.
            let res = call(&mut inner, Request::from_parts(fallback, Body::empty())).await;
            mark(view, res, Served::Bypass)
        }
    }
}

async fn call<S>(svc: &mut S, req: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    match std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
        Ok(()) => {}
        Err(never) => match never {},
    }
    match svc.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The stored form of a response, or the response itself when it may not be stored.
async fn storable(view: &CachedView, res: Response, keyed: &[http::HeaderName]) -> Result<StoredResponse, Outcome> {
    let (parts, body) = res.into_parts();
    let rebuild = |body| Response::from_parts(parts.clone(), body);
    let reject = |why: NotStored, body| {
        tracing::trace!(?why, view = view.name(), "cacheops-axum: response not stored");
        Err(Outcome::Pass(Box::new(rebuild(body))))
    };
    if let Err(why) = response::storable_head(parts.status, &parts.headers) {
        return reject(why, body);
    }
    match response::vary_names(&parts.headers) {
        Err(why) => return reject(why, body),
        Ok(names) if view.learn(&names, keyed) => return reject(NotStored::VaryUnknown, body),
        Ok(_) => {}
    }
    if response::declared_over(&parts.headers, view.max_body) {
        return reject(NotStored::TooLarge, body);
    }
    match response::buffer(body, view.max_body).await {
        Ok(bytes) => Ok(StoredResponse::new(parts.status, &parts.headers, bytes)),
        Err((body, why)) => reject(why, body),
    }
}

fn mark(view: &CachedView, mut res: Response, served: Served) -> Response {
    if let Some(h) = &view.status_header {
        res.headers_mut().insert(h.clone(), served.header());
    }
    res
}
