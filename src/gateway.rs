//! `Gateway::start(Config)`: validates everything purely, then opens the store, binds the
//! listeners and starts the delivery workers. `callgate serve`, `callgate demo` and the
//! integration tests all start the gateway through here.

use crate::adapters::http_out::OutboundClient;
use crate::config::{self, Config, StoreConfig};
use crate::delivery::sqlite::SqliteQueue;
use crate::delivery::worker::{self, RetryPolicy};
use crate::delivery::{Queue, QueueError};
use crate::mapping::{MappingSet, Problems};
use crate::route::Route;
use crate::server::{self, admin, intake::Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The mappings are invalid.
    #[error("invalid mappings:\n{0}")]
    Mappings(Problems),
    /// The configuration is invalid.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(QueueError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A running gateway.
pub struct Gateway {
    /// The public listener's bound address.
    pub addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    /// The store.
    pub queue: Arc<dyn Queue>,
    stop: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
    workers: JoinHandle<()>,
    sqlite: Option<Arc<SqliteQueue>>,
}

/// Loads and checks the mappings a config names, and the config against them. Pure apart
/// from reading the mappings folder; used by `start` and `callgate check --config`.
pub fn prepare(config: &Config) -> Result<Arc<MappingSet>, StartError> {
    let mappings = MappingSet::load(&config.mappings).map_err(StartError::Mappings)?;
    let problems = config::validate(config, &mappings);
    if !problems.is_empty() {
        return Err(StartError::Config(problems));
    }
    Ok(Arc::new(mappings))
}

impl Gateway {
    /// Validates, opens the store, binds both listeners and starts serving.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let mappings = prepare(&config)?;
        let (queue, sqlite): (Arc<dyn Queue>, Option<Arc<SqliteQueue>>) = match &config.store {
            StoreConfig::Sqlite { path } => {
                let q = Arc::new(
                    SqliteQueue::open(path, config.delivery.dedupe_window)
                        .map_err(StartError::Store)?,
                );
                (q.clone(), Some(q))
            }
            StoreConfig::Nats { .. } => {
                return Err(StartError::Config(vec![
                    "store.kind nats is not in this build yet".into(),
                ]));
            }
        };
        let client = Arc::new(OutboundClient::new(&config).map_err(StartError::Client)?);
        let wake = Arc::new(Notify::new());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = watch::channel(false);

        let shared = Arc::new(Shared {
            mappings: mappings.clone(),
            queue: queue.clone(),
            client: client.clone(),
            wake: wake.clone(),
            max_body: config.server.max_body_bytes,
            max_depth: config.delivery.max_queue_depth,
        });
        crate::telemetry::metrics::handle();
        let routes = Route::all(&config, &mappings);
        let health = server::health(queue.clone(), ready.clone());
        let public = server::public_router(
            shared,
            routes,
            config.fallback.as_ref().map(|f| f.value().to_string()),
            config.server.request_timeout,
            health.clone(),
        );
        let admin = admin::router(
            Arc::new(admin::Admin {
                queue: queue.clone(),
                mappings: mappings.clone(),
                token: config
                    .server
                    .admin_token
                    .as_ref()
                    .map(|t| format!("Bearer {}", t.value())),
            }),
            health,
        );

        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let public_listener = bind(config.server.listen).await?;
        let admin_listener = bind(config.server.admin_listen).await?;
        let addr = public_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.server.admin_listen,
                source,
            })?;

        let serve = |listener: tokio::net::TcpListener,
                     app: axum::Router,
                     mut stop: watch::Receiver<bool>| {
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "server stopped with an error");
                }
            })
        };
        let servers = vec![
            serve(public_listener, public, stop_rx.clone()),
            serve(admin_listener, admin, stop_rx.clone()),
        ];
        let workers = tokio::spawn(worker::run(
            queue.clone(),
            client,
            RetryPolicy {
                schedule: config.delivery.retry.clone(),
            },
            config.delivery.workers,
            wake,
            stop_rx,
        ));
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%addr, %admin_addr, routes = config.routes.len(), "callgate listening");
        Ok(Gateway {
            addr,
            admin_addr,
            queue,
            stop,
            ready,
            servers,
            workers,
            sqlite,
        })
    }

    /// Stops intake, lets in-flight requests and delivery attempts finish, and closes the
    /// store with the queue intact.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.workers.await;
        if let Some(sqlite) = self.sqlite {
            tokio::task::spawn_blocking(move || sqlite.close())
                .await
                .ok();
        }
        tracing::info!("callgate stopped; undelivered messages stay in the store");
    }
}
