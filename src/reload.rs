//! Hot reload: rebuild the snapshot from the config file and the mappings folder, and swap it
//! in only if it passes the same validation as `callgate check` (mapping cases included). A
//! rejected set leaves the old one serving; its error (file, line, reason) is logged, returned
//! by `POST /admin/reload`, shown by `GET /admin/mappings` and flagged by a metric.
//!
//! Triggers: a debounced watch of the config file and the mappings folder, `SIGHUP`, and
//! `POST /admin/reload`. Reloads run one at a time. Settings that need a restart (`server`,
//! `store`, `delivery`, `archive`) are refused with a message saying so; every other section applies,
//! sources and RingCentral keepers through the gateway's supervisor ([`Reloader::on_swap`]).

use crate::config::valid::ValidConfig;
use crate::config::{self, Config};
use crate::snapshot::{Resources, Snapshot, is_mapping_file};
use crate::telemetry::metrics as m;
use crate::telemetry::tail::Entry;
use arc_swap::ArcSwap;
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How long the file watch waits for edits to settle before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What asked for a reload (logged, and the `trigger` of the status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file watch saw the config or a mapping file change.
    Watch,
    /// `SIGHUP`.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
        }
    }
}

/// The result of a reload that was not rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new snapshot is being served.
    Swapped {
        /// Its version.
        version: u64,
    },
    /// The files hash the same as the snapshot being served: nothing to do.
    Unchanged {
        /// The version still served.
        version: u64,
    },
}

#[derive(Debug, Default, Clone)]
struct Status {
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    last_trigger: Option<Trigger>,
}

/// Rebuilds and swaps snapshots.
pub struct Reloader {
    path: Option<PathBuf>,
    base: Arc<Config>,
    resources: Resources,
    snapshots: Arc<ArcSwap<Snapshot>>,
    status: Mutex<Status>,
    running: tokio::sync::Mutex<()>,
    /// Told the configuration of every swapped snapshot (the gateway's supervisor).
    swapped: Mutex<Option<mpsc::UnboundedSender<Arc<ValidConfig>>>>,
}

impl Reloader {
    /// A reloader for the snapshot in `snapshots`, built from `base` (read from `path`, when
    /// the gateway was started from a file).
    pub fn new(
        path: Option<PathBuf>,
        base: Arc<Config>,
        resources: Resources,
        snapshots: Arc<ArcSwap<Snapshot>>,
    ) -> Reloader {
        metrics::gauge!(m::SNAPSHOT_VERSION).set(snapshots.load().version as f64);
        metrics::gauge!(m::RELOAD_FAILING).set(0.0);
        Reloader {
            path,
            base,
            resources,
            snapshots,
            status: Mutex::default(),
            running: tokio::sync::Mutex::new(()),
            swapped: Mutex::default(),
        }
    }

    /// The snapshots this reloader swaps.
    pub fn snapshots(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshots
    }

    /// Rebuilds the snapshot and swaps it in if it is valid and different. The error names
    /// every problem (file and line) and leaves the current snapshot serving.
    pub async fn reload(self: &Arc<Self>, trigger: Trigger) -> Result<Reloaded, String> {
        let _one_at_a_time = self.running.lock().await;
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.rebuild())
            .await
            .unwrap_or_else(|e| Err(format!("the reload task failed: {e}")));
        let (outcome, version, detail) = match &result {
            Ok(Reloaded::Swapped { version }) => {
                ("reloaded", *version, trigger.label().to_string())
            }
            Ok(Reloaded::Unchanged { version }) => {
                ("unchanged", *version, trigger.label().to_string())
            }
            Err(e) => (
                "rejected",
                self.snapshots.load().version,
                format!("{}: {e}", trigger.label()),
            ),
        };
        self.resources.tail.publish(Entry::Reload {
            outcome,
            version,
            detail,
        });
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_trigger = Some(trigger);
        match &result {
            Ok(Reloaded::Swapped { version }) => {
                status.last_error = None;
                status.last_error_at = None;
                metrics::counter!(m::RELOADS, "result" => "ok").increment(1);
                metrics::gauge!(m::SNAPSHOT_VERSION).set(*version as f64);
                metrics::gauge!(m::RELOAD_FAILING).set(0.0);
                tracing::info!(
                    version,
                    trigger = trigger.label(),
                    "reloaded mappings and routes"
                );
            }
            Ok(Reloaded::Unchanged { version }) => {
                status.last_error = None;
                metrics::counter!(m::RELOADS, "result" => "unchanged").increment(1);
                metrics::gauge!(m::RELOAD_FAILING).set(0.0);
                tracing::debug!(
                    version,
                    trigger = trigger.label(),
                    "reload: nothing changed"
                );
            }
            Err(e) => {
                status.last_error = Some(e.clone());
                status.last_error_at = Some(SystemTime::now());
                metrics::counter!(m::RELOADS, "result" => "rejected").increment(1);
                metrics::gauge!(m::RELOAD_FAILING).set(1.0);
                tracing::error!(trigger = trigger.label(), error = %e, "reload rejected; the previous mappings and routes keep serving");
            }
        }
        result
    }

    /// From now on, the configuration of every swapped snapshot is sent to `to` (the gateway
    /// reconciles its sources and keepers with it).
    pub fn on_swap(&self, to: mpsc::UnboundedSender<Arc<ValidConfig>>) {
        *self.swapped.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }

    fn rebuild(&self) -> Result<Reloaded, String> {
        let config = match &self.path {
            Some(path) => config::load(path).map_err(|e| e.to_string())?,
            None => (*self.base).clone(),
        };
        let mut restart = Vec::new();
        if config.server != self.base.server {
            restart.push("server");
        }
        if config.store != self.base.store {
            restart.push("store");
        }
        if config.delivery != self.base.delivery {
            restart.push("delivery");
        }
        if config.archive != self.base.archive {
            restart.push("archive");
        }
        if !restart.is_empty() {
            return Err(format!(
                "{}: `{}` changed, which needs a restart; nothing was reloaded",
                self.path
                    .as_deref()
                    .unwrap_or(Path::new("config"))
                    .display(),
                restart.join("`, `")
            ));
        }
        let current = self.snapshots.load_full();
        let next =
            crate::check::load_snapshot(Arc::new(config), &self.resources, current.version + 1)
                .map_err(|e| e.to_string())?;
        if next.content_hash == current.content_hash {
            return Ok(Reloaded::Unchanged {
                version: current.version,
            });
        }
        let version = next.version;
        let config = next.valid.clone();
        self.snapshots.store(Arc::new(next));
        if let Some(to) = &*self.swapped.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = to.send(config);
        }
        Ok(Reloaded::Swapped { version })
    }

    /// `GET /admin/mappings`: what is served and how the last reload went.
    pub fn status_json(&self) -> Value {
        let snapshot = self.snapshots.load();
        let status = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let unix = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default()
        };
        json!({
            "version": snapshot.version,
            "content_hash": snapshot.content_hash,
            "loaded_at_ms": unix(snapshot.loaded_at),
            "mappings": snapshot.mappings.root(),
            "vendors": snapshot.mappings.vendors().map(|v| v.id.clone()).collect::<Vec<_>>(),
            "routes": snapshot.routes().iter().map(|r| json!({
                "name": r.name, "path": r.path, "from": r.from,
                "destinations": r.destinations.iter().map(|d| &d.name).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "config": self.path,
            "last_error": status.last_error,
            "last_error_at_ms": status.last_error_at.map(unix),
            "last_trigger": status.last_trigger.map(Trigger::label),
        })
    }

    /// Watches the config file and the mappings folder; each settled change sends a
    /// reload trigger. The returned guard stops the watch when dropped.
    pub fn watch(&self, triggers: mpsc::UnboundedSender<Trigger>) -> Result<WatchGuard, String> {
        let mappings = self.snapshots.load().mappings.root().to_path_buf();
        let mappings = std::fs::canonicalize(&mappings).unwrap_or(mappings);
        let config_file = self
            .path
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
        // Directory files (`directories:`) are watched too: ops edit them, a reload follows.
        let directories: Vec<PathBuf> = self
            .snapshots
            .load()
            .config
            .directories
            .values()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let watched_directories = directories.clone();
        let (watched_config, watched_mappings) = (config_file.clone(), mappings.clone());
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            let relevant = events.iter().any(|e| {
                !matches!(e.kind, EventKind::Access(_))
                    && e.paths.iter().any(|p| {
                        (p.starts_with(&watched_mappings) && is_mapping_file(p))
                            || Some(p) == watched_config.as_ref()
                            || watched_directories.contains(p)
                    })
            });
            if relevant {
                let _ = triggers.send(Trigger::Watch);
            }
        })
        .map_err(|e| format!("cannot watch files: {e}"))?;
        debouncer
            .watch(&mappings, RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", mappings.display()))?;
        if let Some(file) = &config_file
            && let Some(dir) = file.parent()
        {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        }
        let mut folders: Vec<&Path> = directories.iter().filter_map(|f| f.parent()).collect();
        folders.sort();
        folders.dedup();
        for folder in folders {
            if config_file.as_deref().and_then(Path::parent) != Some(folder) {
                debouncer
                    .watch(folder, RecursiveMode::NonRecursive)
                    .map_err(|e| format!("cannot watch {}: {e}", folder.display()))?;
            }
        }
        Ok(WatchGuard {
            _debouncer: debouncer,
        })
    }
}

/// Keeps a file watch running; dropping it stops the watch.
pub struct WatchGuard {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}
