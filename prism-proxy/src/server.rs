//! Start-up and graceful shutdown of the proxy's listeners.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pattern_core::SystemClock;
use prism_proto::admin::v1::admin_service_server::AdminServiceServer;
use prism_proto::keyvalue::v1::key_value_service_server::KeyValueServiceServer;
use prism_proto::pubsub::v1::pub_sub_service_server::PubSubServiceServer;
use prism_proto::timeseries::v1::time_series_service_server::TimeSeriesServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::{self, AdminState};
use crate::audit::{AuditError, AuditLog};
use crate::auth::{AuthLayer, Authenticator, SetupError};
use crate::config::StoreSpec;
use crate::config::{ConfigError, ProxyConfig};
use crate::inflight::{InFlight, InFlightLayer};
use crate::kv::KvService;
use crate::listener::{self, Limits, Plain, Tls};
use crate::malformed::MalformedLayer;
use crate::manage::{Manager, ManagerSetup};
use crate::pubsub::PsService;
use crate::registry::Registry;
use crate::status::AdminApi;
use crate::store::{ConfigStore, DirStore, MemoryStore, NatsKvStore, PostgresStore};
use crate::timeseries::TsService;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "cannot listen on {addr} for {listener}: {source}; is another Prism running? \
         choose another address with listeners.{listener} in prism.yaml or --{listener}-addr"
    )]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("authentication: {0}")]
    Auth(#[from] SetupError),
    #[error("{0}")]
    Limits(#[from] listener::LimitError),
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("building the gRPC reflection service: {0}")]
    Reflection(String),
    #[error("{0}")]
    Store(crate::store::StoreError),
}

/// Opens the configured namespace store.
async fn open_store(config: &ProxyConfig) -> Result<Arc<dyn ConfigStore>, StartError> {
    Ok(match &config.store {
        StoreSpec::Memory => Arc::new(MemoryStore::new(
            config
                .namespaces
                .iter()
                .map(|ns| (ns.name.clone(), ns.yaml.clone(), ns.source.clone())),
        )),
        StoreSpec::Dir(dir) => Arc::new(DirStore::new(dir.clone())),
        StoreSpec::Postgres { url, table } => Arc::new(
            PostgresStore::connect(url, table)
                .await
                .map_err(StartError::Store)?,
        ),
        StoreSpec::Nats { url, bucket } => Arc::new(
            NatsKvStore::connect(url, bucket)
                .await
                .map_err(StartError::Store)?,
        ),
    })
}

/// Server reflection over the same descriptors, for both protocol
/// versions: `grpc.reflection.v1` and `grpc.reflection.v1alpha` (which
/// many clients still speak only). Each lists both reflection services.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(prism_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// A running proxy.
pub struct RunningProxy {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound admin HTTP address.
    pub admin_addr: SocketAddr,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    manager: Arc<Manager>,
    watch_stop: tokio::sync::watch::Sender<bool>,
    watch_task: JoinHandle<()>,
    admin: Arc<AdminState>,
    health: HealthReporter,
    grpc_stop: oneshot::Sender<()>,
    admin_stop: oneshot::Sender<()>,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    in_flight: Arc<InFlight>,
    admin_task: JoinHandle<io::Result<()>>,
    grace: Duration,
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

/// Opens every namespace's backend, binds both listeners and starts
/// serving. Returns once the proxy is ready.
pub async fn start(config: ProxyConfig) -> Result<RunningProxy, StartError> {
    // Installed first: the listener's gauges count from the first
    // connection on.
    let metrics = crate::metrics::install();
    crate::audit::describe_metrics();
    crate::listener::describe_metrics();
    crate::limits::describe_metrics();
    let limits = Limits::new(&config.listeners)?;
    let audit = AuditLog::start(&config.audit, &config.data_dir).await?;
    let store = open_store(&config).await?;
    let clock: Arc<dyn pattern_core::Clock> = Arc::new(SystemClock);
    let registry = if config.store.is_shared() {
        // Namespaces come from the store; the manager loads them below.
        Arc::new(Registry::empty())
    } else {
        // Parsed with the configuration (strictly: an invalid file stops
        // start-up); versions come from the store.
        let stored = store.list().await.map_err(StartError::Store)?;
        let with_versions: Vec<_> = config
            .namespaces
            .iter()
            .map(|ns| {
                let version = stored
                    .iter()
                    .find(|s| s.name == ns.name)
                    .map_or(0, |s| s.version);
                (ns.clone(), version)
            })
            .collect();
        Arc::new(
            Registry::open(
                &with_versions,
                &config.resolver(),
                &config.data_dir,
                clock.clone(),
            )
            .await?,
        )
    };
    let manager = Manager::new(ManagerSetup {
        store: store.clone(),
        registry: registry.clone(),
        audit: audit.clone(),
        catalog: config.backends.clone(),
        resolver: config.resolver(),
        data_dir: config.data_dir.clone(),
        schema_base: match &config.store {
            StoreSpec::Memory => None,
            StoreSpec::Dir(dir) => Some(dir.clone()),
            _ => Some(config.schema_dir.clone()),
        },
        clock,
        grace: Duration::from_secs(config.shutdown_grace_secs),
    });
    if config.store.is_shared() {
        let report = manager.load_initial().await.map_err(|e| {
            StartError::Store(match e {
                crate::manage::ManageError::Store(e) => e,
                other => crate::store::StoreError::Invalid(other.to_string()),
            })
        })?;
        for (name, why) in &report.rejected {
            tracing::error!(namespace = %name, error = %why, "namespace in the config store rejected; not served until fixed");
        }
    }
    let (watch_stop, watch_stopped) = tokio::sync::watch::channel(false);
    let watch_task = tokio::spawn(manager.clone().watch(watch_stopped));
    let grpc_listener = bind("grpc", config.listeners.grpc).await?;
    let admin_listener = bind("admin", config.listeners.admin).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            listener: "grpc",
            addr: config.listeners.grpc,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            listener: "admin",
            addr: config.listeners.admin,
            source,
        })?;

    let max = config.listeners.max_message_bytes;
    let kv = KeyValueServiceServer::new(
        KvService::new(registry.clone(), audit.clone()).with_auth_enabled(config.auth.enabled),
    )
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let ts = TimeSeriesServiceServer::new(
        TsService::new(registry.clone(), audit.clone()).with_auth_enabled(config.auth.enabled),
    )
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let ps = PubSubServiceServer::new(
        PsService::new(registry.clone(), audit.clone()).with_auth_enabled(config.auth.enabled),
    )
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<KeyValueServiceServer<KvService>>()
        .await;
    health
        .set_serving::<TimeSeriesServiceServer<TsService>>()
        .await;
    health.set_serving::<PubSubServiceServer<PsService>>().await;
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
    let in_flight = Arc::new(InFlight::default());
    let authenticator = Authenticator::new(&config.auth).await?;
    let admin_api = Arc::new(
        AdminApi::new(registry.clone(), audit.clone(), manager.clone())
            .with_auth_enabled(config.auth.enabled)
            .with_admins(config.auth.admins.clone()),
    );
    let tls = config
        .auth
        .tls
        .as_ref()
        .map(crate::auth::server_tls)
        .transpose()?;
    log_auth_mode(&config, grpc_addr);
    let listeners = &config.listeners;
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(listeners.max_concurrent_streams)
        .http2_keepalive_interval(listeners.http2_keepalive_interval())
        .http2_keepalive_timeout(Some(listeners.http2_keepalive_timeout()))
        .layer(InFlightLayer(in_flight.clone()))
        .layer(AuthLayer(authenticator.clone()))
        .layer(MalformedLayer(audit.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(kv)
        .add_service(ts)
        .add_service(ps)
        .add_service(AdminServiceServer::from_arc(admin_api.clone()));
    let stopped = async {
        grpc_stopped.await.ok();
    };
    // One IO type per server: plain text, or TLS whose connection info
    // carries the client's certificates.
    let grpc_task = match tls {
        None => tokio::spawn(router.serve_with_incoming_shutdown(
            listener::incoming(grpc_listener, limits, Plain),
            stopped,
        )),
        Some(tls) => tokio::spawn(router.serve_with_incoming_shutdown(
            listener::incoming(grpc_listener, limits, Tls::new(tls)),
            stopped,
        )),
    };

    let admin = Arc::new(AdminState {
        registry: registry.clone(),
        metrics,
        ready: true.into(),
        api: admin_api,
        auth: authenticator,
    });
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let app = admin::router(admin.clone());
    let admin_task = tokio::spawn(async move {
        axum::serve(admin_listener, app)
            .with_graceful_shutdown(async {
                admin_stopped.await.ok();
            })
            .await
    });
    tracing::info!(
        grpc = %grpc_addr,
        admin = %admin_addr,
        namespaces = registry.list().len(),
        store = %store.describe(),
        "prism proxy serving"
    );
    Ok(RunningProxy {
        grpc_addr,
        admin_addr,
        registry,
        audit,
        manager,
        watch_stop,
        watch_task,
        admin,
        health,
        grpc_stop,
        admin_stop,
        grpc_task,
        in_flight,
        admin_task,
        grace: Duration::from_secs(config.shutdown_grace_secs),
    })
}

/// Says at start-up how callers are authenticated; loudly when they are
/// not.
fn log_auth_mode(config: &ProxyConfig, grpc_addr: SocketAddr) {
    let auth = &config.auth;
    let tls = auth.tls.is_some();
    if !auth.enabled {
        tracing::warn!(
            grpc = %grpc_addr,
            tls,
            "AUTHENTICATION IS DISABLED: anyone who can reach {grpc_addr} can read and write every \
             namespace and call the admin API; keep the listener on localhost or set \
             auth.enabled: true in prism.yaml"
        );
        return;
    }
    tracing::info!(
        grpc = %grpc_addr,
        jwt_issuer = auth.jwt.as_ref().map(|j| j.issuer.as_str()).unwrap_or("-"),
        tls,
        client_certs = auth.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
        "authentication enabled"
    );
    if !tls {
        tracing::warn!(
            grpc = %grpc_addr,
            "the gRPC listener is plain text: bearer tokens cross the network unencrypted; \
             configure auth.tls"
        );
    }
}

impl RunningProxy {
    /// The namespace registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Applies namespace changes (reload on SIGHUP).
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    /// Drains and stops: readiness and gRPC health turn to not-serving, the
    /// gRPC listener stops accepting (audit tail followers end), in-flight
    /// calls finish (up to the grace period), the audit log writes and
    /// fsyncs what is queued, then every backend is closed and the admin
    /// listener stops.
    pub async fn shutdown(self) {
        tracing::info!(grace_secs = self.grace.as_secs(), "draining");
        let _ = self.watch_stop.send(true);
        let _ = self.watch_task.await;
        self.admin.ready.store(false, Ordering::Release);
        self.health
            .set_not_serving::<KeyValueServiceServer<KvService>>()
            .await;
        self.health
            .set_not_serving::<TimeSeriesServiceServer<TsService>>()
            .await;
        self.health
            .set_not_serving::<PubSubServiceServer<PsService>>()
            .await;
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let _ = self.grpc_stop.send(());
        self.audit.tail().close();
        // The listener now refuses new connections and tells clients to go
        // away. Wait until the server ends by itself (every connection
        // closed) or no call is in flight any more, whichever is first;
        // idle connections do not hold shutdown up.
        let mut grpc_task = self.grpc_task;
        let drained = tokio::time::timeout(self.grace, async {
            tokio::select! {
                ended = &mut grpc_task => Some(ended),
                () = self.in_flight.wait_idle() => None,
            }
        })
        .await;
        match drained {
            Ok(Some(Ok(Ok(())))) | Ok(None) => tracing::info!("in-flight calls finished"),
            Ok(Some(Ok(Err(e)))) => tracing::warn!(error = %e, "grpc server ended with an error"),
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "grpc server task failed"),
            Err(_) => tracing::warn!(
                in_flight = self.in_flight.count(),
                "grace period over; closing backends while calls are still running"
            ),
        }
        // Let responses already produced reach the wire, then close what is
        // left (idle connections).
        if !grpc_task.is_finished()
            && tokio::time::timeout(Duration::from_millis(250), &mut grpc_task)
                .await
                .is_err()
        {
            grpc_task.abort();
        }
        self.audit.close().await;
        self.registry.close_all().await;
        let _ = self.admin_stop.send(());
        if let Ok(Err(e)) = self.admin_task.await {
            tracing::warn!(error = %e, "admin listener ended with an error");
        }
        tracing::info!("stopped");
    }
}
