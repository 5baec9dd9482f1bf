//! One supervisor for every long-lived part (README "How it fits together"): a [`Component`] — a source, a
//! RingCentral subscription keeper — has a name, a fingerprint of its configuration and a
//! `run` that lasts until it is told to stop. [`Supervisor::reconcile`] takes the components a
//! configuration wants and starts the new ones, stops the removed ones and restarts the changed
//! ones; the gateway calls it at start and after every reload, so a reload applies a changed
//! `sources:` entry or a route's `ringcentral:` block instead of reporting it reloaded and
//! leaving the old one running.

use crate::model::outbound::BoxFuture;
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A long-lived part of the gateway.
pub trait Component: Send + 'static {
    /// Its unique name among components (`source rte`, `keeper rc-hooks`): logs and reconcile.
    fn name(&self) -> String;
    /// A fingerprint of everything it was built from: a component whose fingerprint changed is
    /// restarted. Compared in memory only, never logged (it may hold secrets).
    fn spec(&self) -> String;
    /// Runs until `stop` turns true (or the component ends by itself).
    fn run(self: Box<Self>, stop: watch::Receiver<bool>) -> BoxFuture<'static, ()>;
}

/// What one [`Supervisor::reconcile`] did, by component name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Components that were not running and now are.
    pub started: Vec<String>,
    /// Components that ran and are no longer wanted: stopped.
    pub stopped: Vec<String>,
    /// Components whose configuration changed: stopped, then started anew.
    pub restarted: Vec<String>,
    /// Components left running as they were.
    pub kept: Vec<String>,
}

struct Running {
    spec: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running components, by name.
#[derive(Default)]
pub struct Supervisor {
    running: BTreeMap<String, Running>,
}

impl Supervisor {
    /// Makes the running set equal to `wanted`: starts, stops and restarts (a stop waits for
    /// the component to end, so two of one name never run at once).
    pub async fn reconcile(&mut self, wanted: Vec<Box<dyn Component>>) -> Reconciled {
        let mut done = Reconciled::default();
        let mut wanted: BTreeMap<String, Box<dyn Component>> =
            wanted.into_iter().map(|c| (c.name(), c)).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.stop(&name).await;
            done.stopped.push(name);
        }
        for (name, component) in std::mem::take(&mut wanted) {
            let spec = component.spec();
            match self.running.get(&name) {
                Some(running) if running.spec == spec && !running.task.is_finished() => {
                    done.kept.push(name);
                    continue;
                }
                Some(_) => {
                    self.stop(&name).await;
                    done.restarted.push(name.clone());
                }
                None => done.started.push(name.clone()),
            }
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(component.run(stopped));
            self.running.insert(name, Running { spec, stop, task });
        }
        for (what, names) in [
            ("started", &done.started),
            ("stopped", &done.stopped),
            ("restarted", &done.restarted),
        ] {
            for name in names {
                tracing::info!(component = %name, "{what}");
            }
        }
        done
    }

    /// Stops every component and waits for each to end.
    pub async fn stop_all(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    /// The names of the running components.
    pub fn names(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    async fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A component that records its starts and stops in a shared log.
    struct Probe {
        name: &'static str,
        spec: &'static str,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Component for Probe {
        fn name(&self) -> String {
            self.name.into()
        }
        fn spec(&self) -> String {
            self.spec.into()
        }
        fn run(self: Box<Self>, mut stop: watch::Receiver<bool>) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                let entry = format!("{}:{}", self.name, self.spec);
                self.log.lock().unwrap().push(format!("start {entry}"));
                let _ = stop.wait_for(|s| *s).await;
                self.log.lock().unwrap().push(format!("stop {entry}"));
            })
        }
    }

    #[tokio::test]
    async fn reconcile_starts_new_stops_removed_restarts_changed_and_keeps_the_rest() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = |name, spec| -> Box<dyn Component> {
            Box::new(Probe {
                name,
                spec,
                log: log.clone(),
            })
        };
        let mut supervisor = Supervisor::default();
        let first = supervisor
            .reconcile(vec![probe("a", "1"), probe("b", "1")])
            .await;
        assert_eq!(first.started, ["a", "b"]);
        let second = supervisor
            .reconcile(vec![probe("a", "1"), probe("b", "2"), probe("c", "1")])
            .await;
        assert_eq!(second.kept, ["a"]);
        assert_eq!(second.restarted, ["b"]);
        assert_eq!(second.started, ["c"]);
        let third = supervisor.reconcile(vec![probe("c", "1")]).await;
        assert_eq!(third.stopped, ["a", "b"]);
        supervisor.stop_all().await;
        assert!(supervisor.names().is_empty());
        let log = log.lock().unwrap().clone();
        // b:1 was stopped before b:2 started: never two of one name at once.
        let stop_b1 = log.iter().position(|l| l == "stop b:1").unwrap();
        let start_b2 = log.iter().position(|l| l == "start b:2").unwrap();
        assert!(stop_b1 < start_b2, "{log:?}");
        assert!(log.contains(&"stop c:1".to_string()), "{log:?}");
    }
}
