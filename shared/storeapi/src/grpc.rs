//! gRPC adapters: serve any [`StoreApi`] as Thanos's `thanos.Store` and
//! `thanos.info.Info` services ([`StoreGrpc`], [`serve`]), and call a remote
//! StoreAPI (an Aether store or a Thanos sidecar/store/receiver) as a
//! [`StoreApi`] ([`GrpcStore`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::pb::info::info_client::InfoClient;
use crate::pb::info::info_server::{Info, InfoServer};
use crate::pb::store_client::StoreClient;
use crate::pb::store_server::{Store, StoreServer};
use crate::pb::{self, info as infopb};
use crate::{Error, Result, SeriesStream, StoreApi};

/// Largest message accepted by default, either way: 256 MiB. (Thanos accepts up
/// to 2 GiB; a Series frame normally holds one series, a few KiB to MiB.)
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 << 20;

/// Serves an `Arc<dyn StoreApi>` as the generated `Store` and `Info` services.
#[derive(Clone)]
pub struct StoreGrpc {
    store: Arc<dyn StoreApi>,
    max_message_size: usize,
}

impl StoreGrpc {
    /// An adapter for `store`, with [`DEFAULT_MAX_MESSAGE_SIZE`] limits.
    pub fn new(store: Arc<dyn StoreApi>) -> Self {
        StoreGrpc {
            store,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Sets the largest message received or sent.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The `thanos.Store` service.
    pub fn store_service(&self) -> StoreServer<StoreGrpc> {
        StoreServer::new(self.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
    }

    /// The `thanos.info.Info` service.
    pub fn info_service(&self) -> InfoServer<StoreGrpc> {
        InfoServer::new(self.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
    }
}

/// Serves `store` as `thanos.Store` and `thanos.info.Info` on `listener` until
/// `shutdown` completes (then finishes in-flight calls).
pub async fn serve(
    store: Arc<dyn StoreApi>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let adapter = StoreGrpc::new(store);
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(adapter.store_service())
        .add_service(adapter.info_service())
        .serve_with_incoming_shutdown(
            // Accepted sockets get the options here, not from the builder's.
            tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(60))),
            shutdown,
        )
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")))
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for StoreGrpc {
    type SeriesStream = StatusStream;

    async fn series(
        &self,
        request: Request<pb::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let stream = self.store.series(request.into_inner()).await?;
        Ok(Response::new(Box::pin(
            stream.map(|r| r.map_err(Status::from)),
        )))
    }

    async fn label_names(
        &self,
        request: Request<pb::LabelNamesRequest>,
    ) -> Result<Response<pb::LabelNamesResponse>, Status> {
        Ok(Response::new(
            self.store.label_names(request.into_inner()).await?,
        ))
    }

    async fn label_values(
        &self,
        request: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        Ok(Response::new(
            self.store.label_values(request.into_inner()).await?,
        ))
    }
}

#[tonic::async_trait]
impl Info for StoreGrpc {
    async fn info(
        &self,
        _request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        Ok(Response::new(self.store.info().await?))
    }
}

/// Settings of a [`GrpcStore`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time to establish the connection.
    pub connect_timeout: Duration,
    /// Limit on `info`, `label_names` and `label_values` calls (also sent to the
    /// server as `grpc-timeout`).
    pub request_timeout: Option<Duration>,
    /// Limit on a whole `series` call, until its stream ends.
    pub series_timeout: Option<Duration>,
    /// Largest message received.
    pub max_decoding_message_size: usize,
    /// Largest message sent.
    pub max_encoding_message_size: usize,
    /// HTTP/2 keep-alive ping interval (dead connections are noticed).
    pub keepalive: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(120)),
            series_timeout: Some(Duration::from_secs(600)),
            max_decoding_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_encoding_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            keepalive: Some(Duration::from_secs(30)),
        }
    }
}

/// A remote StoreAPI over gRPC, usable as a [`StoreApi`]. Cheap to clone
/// (clones share the connection).
#[derive(Debug, Clone)]
pub struct GrpcStore {
    address: String,
    store: StoreClient<Channel>,
    info: InfoClient<Channel>,
    opts: ClientOptions,
}

impl GrpcStore {
    /// Connects to `address` (`host:port`, or a `http://` URI) now; a store that
    /// cannot be reached is [`Error::Unavailable`].
    pub async fn connect(address: &str, opts: ClientOptions) -> Result<GrpcStore> {
        let endpoint = endpoint(address, &opts)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Unavailable(format!("connecting to {address}: {e}")))?;
        Ok(Self::from_channel(address, channel, opts))
    }

    /// Like [`GrpcStore::connect`], connecting on first use (and reconnecting
    /// after failures).
    pub fn connect_lazy(address: &str, opts: ClientOptions) -> Result<GrpcStore> {
        let channel = endpoint(address, &opts)?.connect_lazy();
        Ok(Self::from_channel(address, channel, opts))
    }

    /// A store over an existing channel; `address` is for messages only.
    pub fn from_channel(address: &str, channel: Channel, opts: ClientOptions) -> GrpcStore {
        GrpcStore {
            address: address.to_string(),
            store: StoreClient::new(channel.clone())
                .max_decoding_message_size(opts.max_decoding_message_size)
                .max_encoding_message_size(opts.max_encoding_message_size),
            info: InfoClient::new(channel)
                .max_decoding_message_size(opts.max_decoding_message_size)
                .max_encoding_message_size(opts.max_encoding_message_size),
            opts,
        }
    }

    /// The address the store was created with.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn request<T>(&self, msg: T, timeout: Option<Duration>) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = timeout {
            r.set_timeout(t);
        }
        r
    }

    async fn unary<T, F>(&self, what: &str, call: F) -> Result<T>
    where
        F: Future<Output = Result<Response<T>, Status>>,
    {
        let res = match self.opts.request_timeout {
            Some(t) => tokio::time::timeout(t, call).await.map_err(|_| {
                Error::DeadlineExceeded(format!("{what} on {} took over {t:?}", self.address))
            })?,
            None => call.await,
        };
        res.map(Response::into_inner).map_err(Error::from)
    }
}

fn endpoint(address: &str, opts: &ClientOptions) -> Result<Endpoint> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let mut e = Endpoint::from_shared(uri)
        .map_err(|e| Error::InvalidArgument(format!("bad store address {address:?}: {e}")))?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true);
    if let Some(k) = opts.keepalive {
        e = e
            .http2_keep_alive_interval(k)
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
    }
    Ok(e)
}

#[async_trait::async_trait]
impl StoreApi for GrpcStore {
    async fn info(&self) -> Result<infopb::InfoResponse> {
        let mut c = self.info.clone();
        let req = self.request(infopb::InfoRequest {}, self.opts.request_timeout);
        self.unary("Info", c.info(req)).await
    }

    async fn series(&self, req: pb::SeriesRequest) -> Result<SeriesStream> {
        let mut c = self.store.clone();
        let timeout = self.opts.series_timeout;
        let deadline = timeout.map(|t| Instant::now() + t);
        let call = c.series(self.request(req, timeout));
        let response = match deadline {
            Some(d) => tokio::time::timeout_at(d, call)
                .await
                .map_err(|_| self.series_timeout_error())?,
            None => call.await,
        }?;
        let stream = response.into_inner().map(|r| r.map_err(Error::from));
        let Some(deadline) = deadline else {
            return Ok(stream.boxed());
        };
        // Enforce the deadline on the whole stream, not only the first frame.
        let late = self.series_timeout_error();
        Ok(
            futures::stream::unfold((stream, Some(late)), move |(mut s, late)| async move {
                let late = late?;
                match tokio::time::timeout_at(deadline, s.next()).await {
                    Ok(Some(item)) => Some((item, (s, Some(late)))),
                    Ok(None) => None,
                    Err(_) => Some((Err(late), (s, None))),
                }
            })
            .boxed(),
        )
    }

    async fn label_names(&self, req: pb::LabelNamesRequest) -> Result<pb::LabelNamesResponse> {
        let mut c = self.store.clone();
        let req = self.request(req, self.opts.request_timeout);
        self.unary("LabelNames", c.label_names(req)).await
    }

    async fn label_values(&self, req: pb::LabelValuesRequest) -> Result<pb::LabelValuesResponse> {
        let mut c = self.store.clone();
        let req = self.request(req, self.opts.request_timeout);
        self.unary("LabelValues", c.label_values(req)).await
    }
}

impl GrpcStore {
    fn series_timeout_error(&self) -> Error {
        Error::DeadlineExceeded(format!(
            "Series on {} took over {:?}",
            self.address,
            self.opts.series_timeout.unwrap_or_default()
        ))
    }
}
