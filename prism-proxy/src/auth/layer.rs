//! The tower layer that authenticates every gRPC call on the listener.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::{Authenticator, Principal, is_public};

/// Authenticates each request with an [`Authenticator`]: on success the
/// [`Principal`] goes into the request's extensions, otherwise the call is
/// answered with the error's status (`UNAUTHENTICATED` and the reason) and
/// never reaches a service.
#[derive(Debug, Clone)]
pub struct AuthLayer(pub Arc<Authenticator>);

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// A service wrapped by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is not ready; call the instance that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let principal = if is_public(request.uri().path()) {
                Ok(Principal::anonymous())
            } else {
                let certs = request
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|info| info.peer_certs());
                auth.authenticate(request.headers(), certs.as_deref().map(|c| c.as_slice()))
                    .await
            };
            match principal {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(e) => {
                    tracing::info!(
                        path = %request.uri().path(),
                        reason = %e,
                        "call refused: not authenticated"
                    );
                    Ok(tonic::Status::from(e).into_http())
                }
            }
        })
    }
}
