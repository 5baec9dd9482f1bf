//! `Gateway::start`: validates everything purely and builds the first snapshot, then opens
//! the store, binds the listeners, and starts the delivery workers and the reload triggers
//! (file watch, `SIGHUP`, `POST /admin/reload`). `callgate serve`, `callgate demo` and the
//! integration tests all start the gateway through here.

use crate::config::valid::ValidConfig;
use crate::config::{self, Config, ConfigError};
use crate::delivery::worker::{self, RetryPolicy};
use crate::delivery::{QueueError, SharedTable, Store, open_store};
use crate::inbound::Source;
use crate::inbound::ringcentral::keeper::{KeeperComponent, Keepers};
use crate::inbound::signalr::client::SourceStates;
use crate::intake::Intake;
use crate::lifecycle::{LegState, LegUpdate, Lifecycles};
use crate::reload::{Reloader, Trigger, WatchGuard};
use crate::server::archive::ArchiveApi;
use crate::server::{self, Public, admin};
use crate::snapshot::{BuildError, Resources, Snapshot};
use crate::supervisor::{Component, Supervisor};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration file could not be loaded.
    #[error(transparent)]
    Load(#[from] ConfigError),
    /// The mappings, the configuration or the mapping cases are invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(QueueError),
    /// A listener could not be bound.
    // The I/O error is the source: printed once, by whoever prints the chain.
    #[error("cannot listen on {addr}")]
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
    pub store: Store,
    /// The snapshot being served.
    pub snapshots: Arc<ArcSwap<Snapshot>>,
    /// Reloads the snapshot.
    pub reloader: Arc<Reloader>,
    stop: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    hubs: Arc<crate::outbound::signalr::hub::Hubs>,
    tail: crate::telemetry::tail::Tail,
    servers: Vec<JoinHandle<()>>,
    workers: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    _watch: Option<WatchGuard>,
}

impl Gateway {
    /// Loads the config file at `path` and starts; reloads re-read that file.
    pub async fn start_from_file(path: &Path) -> Result<Gateway, StartError> {
        let config = config::load(path)?;
        Gateway::start_with(config, Some(path.to_path_buf())).await
    }

    /// Starts from a config that has no file (reloads re-read the mappings only).
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        Gateway::start_with(config, None).await
    }

    async fn start_with(config: Config, path: Option<PathBuf>) -> Result<Gateway, StartError> {
        let config = Arc::new(config);
        let resources = Resources::new().map_err(StartError::Client)?;
        resources.tail.set_bodies(config.server.tail_bodies);
        let store = open_store(&config.store, &config.delivery, &config.archive, false)
            .await
            .map_err(StartError::Store)?;
        if let Some(table) = store.shared.clone() {
            share_lifecycles(&resources.lifecycles, table)
                .await
                .map_err(StartError::Store)?;
        }
        let keepers_registry: Arc<Keepers> = Arc::default();
        let snapshot = crate::check::load_snapshot(config.clone(), &resources, 1)?;
        let snapshots = Arc::new(ArcSwap::from_pointee(snapshot));
        let wake = Arc::new(Notify::new());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = watch::channel(false);
        crate::telemetry::metrics::handle();

        let reloader = Arc::new(Reloader::new(
            path.clone(),
            config.clone(),
            resources.clone(),
            snapshots.clone(),
        ));
        let sources: Arc<SourceStates> = Arc::default();
        let health = server::health(
            store.producer.clone(),
            ready.clone(),
            sources.clone(),
            keepers_registry.clone(),
        );
        // One intake for webhooks and sources: a call's payloads take turns whichever
        // transport brought them.
        let intake = Intake {
            producer: store.producer.clone(),
            wake: wake.clone(),
            max_depth: config.delivery.max_queue_depth,
            turns: Arc::default(),
            tail: resources.tail.clone(),
            archiver: store.archiver.clone(),
        };
        let public = server::public_router(
            Arc::new(Public {
                snapshots: snapshots.clone(),
                intake: intake.clone(),
                http: resources.http.clone(),
                max_body: config.server.max_body_bytes,
            }),
            config.server.request_timeout,
            config.server.max_concurrent_requests,
            health.clone(),
        );
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let public_listener = bind(config.server.listen).await?;
        let admin_listener = bind(config.server.admin_listen).await?;
        let local = |l: &tokio::net::TcpListener, addr: SocketAddr| {
            l.local_addr()
                .map_err(|source| StartError::Bind { addr, source })
        };
        let addr = local(&public_listener, config.server.listen)?;
        let admin_addr = local(&admin_listener, config.server.admin_listen)?;

        let admin = admin::router(
            Arc::new(admin::Admin {
                dead_letters: store.dead_letters.clone(),
                reloader: reloader.clone(),
                token: config
                    .server
                    .admin_token
                    .as_ref()
                    .map(|t| format!("Bearer {}", t.value())),
                listen: admin_addr,
                public: addr,
                tail: resources.tail.clone(),
                keepers: keepers_registry.clone(),
                archive: Arc::new(ArchiveApi {
                    archive: store.archive.clone(),
                    intake: intake.clone(),
                    reloader: reloader.clone(),
                }),
            }),
            health,
        );

        let limits = server::listen::ConnectionLimits {
            header_read_timeout: config.server.header_read_timeout,
            max_connections: config.server.max_connections,
            max_header_bytes: config.server.max_header_bytes,
        };
        let servers = vec![
            tokio::spawn(server::listen::serve(
                public_listener,
                public,
                limits,
                "public",
                stop_rx.clone(),
            )),
            tokio::spawn(server::listen::serve(
                admin_listener,
                admin,
                limits,
                "admin",
                stop_rx.clone(),
            )),
        ];
        let current = snapshots.clone();
        let workers = tokio::spawn(worker::run(
            store.clone(),
            Arc::new(move || current.load_full() as Arc<dyn worker::Targets>),
            RetryPolicy {
                schedule: config.delivery.retry.clone(),
            },
            config.delivery.workers,
            wake,
            resources.tail.clone(),
            stop_rx.clone(),
        ));

        let (triggers, mut triggered) = mpsc::unbounded_channel::<Trigger>();
        let watch_guard = match reloader.watch(triggers.clone()) {
            Ok(guard) => Some(guard),
            Err(e) => {
                tracing::warn!(error = %e, "file watch unavailable: reload with SIGHUP or POST /admin/reload");
                None
            }
        };
        let mut background = Vec::new();
        // Sources and keepers run under one supervisor, reconciled with the config at start
        // (once the listeners serve: RingCentral validates a keeper's address) and after every
        // swap, whichever trigger caused it.
        let wiring = Wiring {
            http: resources.http.clone(),
            snapshots: snapshots.clone(),
            intake: intake.clone(),
            sources,
            keepers: keepers_registry.clone(),
            hooks: resources.hooks.clone(),
            memory: store.settings.clone(),
        };
        let (swapped, mut configs) = mpsc::unbounded_channel::<Arc<ValidConfig>>();
        reloader.on_swap(swapped);
        let mut supervisor = Supervisor::default();
        supervisor
            .reconcile(wiring.components(&snapshots.load().valid))
            .await;
        let mut stop_supervising = stop_rx.clone();
        background.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = configs.recv() => match next {
                        Some(config) => { supervisor.reconcile(wiring.components(&config)).await; }
                        None => break,
                    },
                    _ = async { let _ = stop_supervising.wait_for(|s| *s).await; } => break,
                }
            }
            supervisor.stop_all().await;
        }));
        let mut stop_upkeep = stop_rx.clone();
        background.push(tokio::spawn(async move {
            tokio::select! {
                _ = crate::telemetry::metrics::upkeep(std::time::Duration::from_secs(5)) => {}
                _ = async { let _ = stop_upkeep.wait_for(|s| *s).await; } => {}
            }
        }));
        let (reload_by, mut stop_reloads) = (reloader.clone(), stop_rx.clone());
        background.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    trigger = triggered.recv() => match trigger {
                        Some(trigger) => { let _ = reload_by.reload(trigger).await; }
                        None => break,
                    },
                    _ = async { let _ = stop_reloads.wait_for(|s| *s).await; } => break,
                }
            }
        }));
        // Registered before the gateway reports ready: a SIGHUP that arrives before its
        // handler would end the process.
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hangups) => {
                let mut stop_signals = stop_rx.clone();
                background.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = hangups.recv() => { let _ = triggers.send(Trigger::Signal); }
                            _ = async { let _ = stop_signals.wait_for(|s| *s).await; } => break,
                        }
                    }
                }));
            }
            Err(e) => tracing::warn!(error = %e, "SIGHUP reload unavailable"),
        }
        ready.store(true, Ordering::Relaxed);
        tracing::info!(%addr, %admin_addr, routes = config.routes.len(), "callgate listening");
        Ok(Gateway {
            addr,
            admin_addr,
            store,
            snapshots,
            reloader,
            stop,
            ready,
            hubs: resources.hubs.clone(),
            tail: resources.tail.clone(),
            servers,
            workers,
            background,
            _watch: watch_guard,
        })
    }

    /// Stops intake, lets in-flight requests and delivery attempts finish, and closes the
    /// store with the queue intact.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        let _ = self.stop.send(true);
        // Hub clients get a Close (allowReconnect) instead of a dropped socket.
        self.hubs.close_all();
        self.tail.close();
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.workers.await;
        for task in self.background {
            let _ = task.await;
        }
        // The last outcomes and forwards are written before the store closes.
        if let Some(archiver) = &self.store.archiver {
            archiver.flush().await;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .ok();
        tracing::info!("callgate stopped; undelivered messages stay in the store");
    }
}

/// What the supervised components are built with: the parts they share with the rest of the
/// gateway.
struct Wiring {
    http: reqwest::Client,
    snapshots: Arc<ArcSwap<Snapshot>>,
    intake: Intake,
    sources: Arc<SourceStates>,
    keepers: Arc<Keepers>,
    hooks: Arc<crate::model::inbound::RouteHooks>,
    memory: Option<Arc<dyn crate::delivery::Settings>>,
}

impl Wiring {
    /// The components `config` wants: one per source, one keeper per route with
    /// `ringcentral:`.
    fn components(&self, config: &ValidConfig) -> Vec<Box<dyn Component>> {
        let mut wanted: Vec<Box<dyn Component>> = Vec::new();
        for source in &config.sources {
            wanted.push(Box::new(Source {
                spec: source.clone(),
                http: self.http.clone(),
                snapshots: self.snapshots.clone(),
                intake: self.intake.clone(),
                states: self.sources.clone(),
            }));
        }
        for keeper in config.routes.iter().filter_map(|r| r.keeper.as_ref()) {
            wanted.push(Box::new(KeeperComponent {
                keeper: keeper.clone(),
                http: self.http.clone(),
                memory: self.memory.clone(),
                keepers: self.keepers.clone(),
                hooks: self.hooks.clone(),
            }));
        }
        wanted
    }
}

/// Scale-out: every committed leg state goes to the store's shared table, and every
/// instance's (this one's included) comes back into the trackers, so a stale event is
/// dropped whichever instance receives it. Keys: `legs.<route, hex>.<leg hash>`; values:
/// `{"route", "seq", "state"}`.
async fn share_lifecycles(
    lifecycles: &Arc<Lifecycles>,
    table: Arc<dyn SharedTable>,
) -> Result<(), QueueError> {
    let Some(mut commits) = lifecycles.share() else {
        return Ok(());
    };
    let mut incoming = table.watch().await?;
    tokio::spawn(async move {
        while let Some(update) = commits.recv().await {
            let route: String = update.route.bytes().map(|b| format!("{b:02x}")).collect();
            let value = serde_json::json!({
                "route": &*update.route,
                "seq": update.state.last_sequence,
                "state": update.state.last_state,
            });
            table.put(
                format!("legs.{route}.{:032x}", update.leg),
                value.to_string().into_bytes(),
            );
        }
    });
    let lifecycles = lifecycles.clone();
    tokio::spawn(async move {
        while let Some((key, value)) = incoming.recv().await {
            let leg = key
                .rsplit('.')
                .next()
                .and_then(|hash| u128::from_str_radix(hash, 16).ok());
            #[derive(serde::Deserialize)]
            struct Shared {
                route: String,
                #[serde(flatten)]
                state: LegState,
            }
            match (leg, serde_json::from_slice::<Shared>(&value)) {
                (Some(leg), Ok(shared)) => lifecycles.merge(LegUpdate {
                    route: Arc::from(shared.route.as_str()),
                    leg,
                    state: shared.state,
                }),
                _ => tracing::warn!(%key, "unreadable shared leg state: ignored"),
            }
        }
    });
    Ok(())
}
