//! The subscription keeper (ringcentral-platform.md A.6): keeps exactly one live webhook
//! subscription for a route's public address. At start, every `check_every`, before expiry
//! and when poked (a renewal reminder): list this app's subscriptions, keep the newest
//! `Active` one for the address and delete the others, create one when none is left (a
//! `Blacklisted` one is deleted and recreated, its reason logged), put the filters back when
//! they drifted, renew when `renew_before` of its life is left. Failures back off (a 429 for
//! its `Retry-After`). The subscription is found by its address, so a restart, or another
//! instance, adopts it instead of creating a second one; its id is remembered in the store,
//! so that one left at an old address is deleted when the route's address changes.

use super::platform::{Group, Platform, PlatformError};
use crate::delivery::Settings;
use crate::telemetry::metrics as m;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How soon the keeper looks again after creating a subscription.
const AFTER_CREATE: Duration = Duration::from_secs(10);

/// What the keeper keeps.
#[derive(Debug, Clone)]
pub struct KeeperSettings {
    /// The route's name (logs, metrics, status).
    pub route: String,
    /// The public HTTPS address RingCentral posts to: the route's URL as seen from outside.
    pub address: String,
    /// Event filters (`/restapi/v1.0/account/~/telephony/sessions`, …).
    pub event_filters: Vec<String>,
    /// `deliveryMode.verificationToken`: the route's verification token.
    pub verification_token: Option<String>,
    /// `expiresIn`, always sent (RingCentral's default is 7 days).
    pub expires_in: Duration,
    /// Renew when less than this is left.
    pub renew_before: Duration,
    /// Look at the subscription at least this often.
    pub check_every: Duration,
}

/// The keeper's state as `/admin/ringcentral`, `/readyz` and `callgate ringcentral status`
/// show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeeperStatus {
    /// The route.
    pub route: String,
    /// `starting`, `active` or `failing`.
    pub state: &'static str,
    /// The subscription id.
    pub subscription_id: Option<String>,
    /// Its `expirationTime`.
    pub expires_at: Option<String>,
    /// When the keeper looks again (RFC 3339).
    pub next_check: Option<String>,
    /// Filters RingCentral refused (`disabledFilters`: filter, reason, message).
    pub disabled_filters: Vec<Value>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Subscriptions created (including recreations).
    pub created: u64,
    /// Renewals.
    pub renewed: u64,
    /// Non-`Active` subscriptions deleted and recreated.
    pub recreated: u64,
}

/// The keeper of one route.
pub struct Keeper {
    platform: Arc<Platform>,
    settings: KeeperSettings,
    /// The store's durable settings: the id of the subscription this route holds, so that
    /// one left at an old address (the route's address changed) is deleted too.
    memory: Option<Arc<dyn Settings>>,
    status: Arc<Mutex<KeeperStatus>>,
    poke: Arc<Notify>,
}

impl Keeper {
    /// A keeper; nothing is sent before [`Keeper::run`]. `memory` (the store's settings)
    /// remembers the subscription id across restarts and instances.
    pub fn new(
        platform: Arc<Platform>,
        settings: KeeperSettings,
        memory: Option<Arc<dyn Settings>>,
    ) -> Keeper {
        let status = KeeperStatus {
            route: settings.route.clone(),
            state: "starting",
            ..KeeperStatus::default()
        };
        Keeper {
            platform,
            settings,
            memory,
            status: Arc::new(Mutex::new(status)),
            poke: Arc::default(),
        }
    }

    /// The status, shared with whoever shows it.
    pub fn status(&self) -> Arc<Mutex<KeeperStatus>> {
        self.status.clone()
    }

    /// Notified to look at once (a renewal reminder arrived).
    pub fn poke(&self) -> Arc<Notify> {
        self.poke.clone()
    }

    /// Keeps the subscription until `stop` turns true. The route's listener must already be
    /// serving: RingCentral validates the address while the create request is in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.reconcile().await {
                Ok(next) => {
                    failures = 0;
                    next
                }
                Err(e) => {
                    failures += 1;
                    let wait = match &e {
                        PlatformError::RateLimited { after, .. } => *after,
                        _ => backoff(failures),
                    };
                    metrics::counter!(m::RC_SUBSCRIPTION_FAILURES, "route" => self.settings.route.clone(), "reason" => e.label())
                        .increment(1);
                    tracing::warn!(route = %self.settings.route, error = %e, retry_in = ?wait, "subscription keeper: failed");
                    metrics::gauge!(m::RC_SUBSCRIPTION_ACTIVE, "route" => self.settings.route.clone()).set(0.0);
                    self.update(|s| {
                        s.state = "failing";
                        s.last_error = Some(e.to_string());
                    });
                    wait
                }
            };
            self.update(|s| s.next_check = Some(crate::telemetry::tail::rfc3339_in(wait)));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.poke.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The settings key of this route's subscription id.
    fn memory_key(&self) -> String {
        format!(
            "ringcentral.{}.subscription",
            crate::delivery::hex16(&self.settings.route)
        )
    }

    /// The subscription id remembered for this route (a store failure is logged: the list
    /// by address still finds the subscription).
    async fn remembered(&self) -> Option<String> {
        let memory = self.memory.as_ref()?;
        match memory.get(&self.memory_key()).await {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(route = %self.settings.route, %error, "cannot read the remembered subscription id");
                None
            }
        }
    }

    async fn remember(&self, id: &str) {
        if let Some(memory) = &self.memory
            && let Err(error) = memory.set(&self.memory_key(), id).await
        {
            tracing::warn!(route = %self.settings.route, %error, "cannot remember the subscription id");
        }
    }

    /// One look: returns how long until the next.
    pub async fn reconcile(&self) -> Result<Duration, PlatformError> {
        let remembered = self.remembered().await;
        let list = self
            .platform
            .call(
                Group::Light,
                Method::GET,
                "/restapi/v1.0/subscription",
                None,
            )
            .await?;
        let mut mine: Vec<&Value> = list["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["deliveryMode"]["transportType"] == "WebHook"
                    && s["deliveryMode"]["address"] == self.settings.address.as_str()
            })
            .collect();
        // Newest first: the one to keep is the newest active one.
        mine.sort_by(|a, b| {
            b["creationTime"]
                .as_str()
                .unwrap_or("")
                .cmp(a["creationTime"].as_str().unwrap_or(""))
        });
        let keep = mine.iter().position(|s| s["status"] == "Active");
        for (index, extra) in mine.iter().enumerate() {
            if Some(index) == keep {
                continue;
            }
            let id = extra["id"].as_str().unwrap_or_default();
            if extra["status"] != "Active" {
                tracing::warn!(
                    route = %self.settings.route,
                    subscription = id,
                    status = %extra["status"],
                    reason = %extra["blacklistedData"]["reason"],
                    "subscription is not active: deleting it and subscribing again"
                );
                self.update(|s| s.recreated += 1);
            } else {
                tracing::warn!(route = %self.settings.route, subscription = id, "a second subscription for this address: deleting it");
            }
            self.delete(id).await?;
        }
        // The route's own subscription at another address (the address changed): delete it,
        // or RingCentral would go on posting to the old address.
        if let Some(old) = &remembered
            && !mine.iter().any(|s| s["id"] == old.as_str())
            && list["records"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["id"] == old.as_str())
        {
            tracing::warn!(route = %self.settings.route, subscription = %old, "the route's address changed: deleting its subscription at the old address");
            self.delete(old).await?;
        }
        let mut created = false;
        let subscription = match keep.map(|i| mine[i]) {
            None => {
                created = true;
                self.create().await?
            }
            Some(current) if !self.same_filters(current) => {
                let id = current["id"].as_str().unwrap_or_default();
                tracing::info!(route = %self.settings.route, subscription = id, "event filters changed: updating");
                let body = json!({
                    "eventFilters": self.settings.event_filters,
                    "expiresIn": self.settings.expires_in.as_secs(),
                });
                let updated = self
                    .platform
                    .call(
                        Group::Medium,
                        Method::PUT,
                        &format!("/restapi/v1.0/subscription/{id}"),
                        Some(&body),
                    )
                    .await?;
                self.note_disabled(&updated);
                updated
            }
            Some(current) if left(current) < self.settings.renew_before => {
                let id = current["id"].as_str().unwrap_or_default();
                let renewed = self
                    .platform
                    .call(
                        Group::Light,
                        Method::POST,
                        &format!("/restapi/v1.0/subscription/{id}/renew"),
                        None,
                    )
                    .await?;
                metrics::counter!(m::RC_SUBSCRIPTION_RENEWALS, "route" => self.settings.route.clone())
                    .increment(1);
                tracing::info!(route = %self.settings.route, subscription = id, expires = %renewed["expirationTime"], "subscription renewed");
                self.update(|s| s.renewed += 1);
                renewed
            }
            Some(current) => current.clone(),
        };
        if let Some(id) = subscription["id"].as_str()
            && remembered.as_deref() != Some(id)
        {
            self.remember(id).await;
        }
        let remaining = left(&subscription);
        metrics::gauge!(m::RC_SUBSCRIPTION_EXPIRES, "route" => self.settings.route.clone())
            .set(remaining.as_secs_f64());
        metrics::gauge!(m::RC_SUBSCRIPTION_ACTIVE, "route" => self.settings.route.clone()).set(1.0);
        self.update(|s| {
            s.state = "active";
            s.last_error = None;
            s.subscription_id = subscription["id"].as_str().map(str::to_string);
            s.expires_at = subscription["expirationTime"].as_str().map(str::to_string);
        });
        let until_renewal = remaining.saturating_sub(self.settings.renew_before);
        Ok(next_look(created, until_renewal, self.settings.check_every))
    }

    async fn create(&self) -> Result<Value, PlatformError> {
        let mut delivery = json!({
            "transportType": "WebHook",
            "address": self.settings.address,
        });
        if let Some(token) = &self.settings.verification_token {
            delivery["verificationToken"] = Value::String(token.clone());
        }
        let body = json!({
            "eventFilters": self.settings.event_filters,
            "deliveryMode": delivery,
            "expiresIn": self.settings.expires_in.as_secs(),
        });
        let created = self
            .platform
            .call(
                Group::Medium,
                Method::POST,
                "/restapi/v1.0/subscription",
                Some(&body),
            )
            .await?;
        tracing::info!(route = %self.settings.route, subscription = %created["id"], expires = %created["expirationTime"], "subscription created");
        self.note_disabled(&created);
        self.update(|s| s.created += 1);
        Ok(created)
    }

    async fn delete(&self, id: &str) -> Result<(), PlatformError> {
        match self
            .platform
            .call(
                Group::Medium,
                Method::DELETE,
                &format!("/restapi/v1.0/subscription/{id}"),
                None,
            )
            .await
        {
            Ok(_) | Err(PlatformError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn note_disabled(&self, subscription: &Value) {
        let disabled: Vec<Value> = subscription["disabledFilters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for d in &disabled {
            tracing::warn!(route = %self.settings.route, filter = %d["filter"], reason = %d["reason"], message = %d["message"], "RingCentral refused an event filter");
        }
        self.update(|s| s.disabled_filters = disabled);
    }

    /// Whether the subscription has exactly the configured filters (RingCentral answers with
    /// `~` resolved to ids: a configured `~` segment matches any id).
    fn same_filters(&self, subscription: &Value) -> bool {
        let theirs: Vec<&str> = subscription["eventFilters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        theirs.len() == self.settings.event_filters.len()
            && self
                .settings
                .event_filters
                .iter()
                .all(|ours| theirs.iter().any(|t| filter_matches(ours, t)))
    }

    fn update(&self, change: impl FnOnce(&mut KeeperStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// A keeper's status, shared between the keeper and whoever shows it.
type SharedStatus = Arc<Mutex<KeeperStatus>>;

/// The RingCentral subscription keepers' handles, by route name.
#[derive(Default)]
pub struct Keepers(Mutex<Vec<(String, Arc<Notify>, SharedStatus)>>);

impl Keepers {
    /// Registers a route's keeper.
    pub fn add(&self, route: &str, poke: Arc<Notify>, status: SharedStatus) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((route.to_string(), poke, status));
    }

    /// Forgets `route`'s keeper (it stopped).
    pub fn remove(&self, route: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(name, ..)| name != route);
    }

    /// The poke of `route`'s keeper.
    pub fn poke(&self, route: &str) -> Option<Arc<Notify>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(name, ..)| name == route)
            .map(|(_, poke, _)| poke.clone())
    }

    /// Every keeper's status, in registration order.
    pub fn statuses(&self) -> Vec<KeeperStatus> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, _, status)| status.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

/// A route's subscription keeper as a supervised component (`routes[].ringcentral`): while it
/// runs, its status is in [`Keepers`] and its route answers renewal reminders through
/// [`RenewalReminders`].
pub struct KeeperComponent {
    /// The route's keeper settings, validated.
    pub keeper: crate::config::valid::ValidKeeper,
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// Durable settings (the subscription id is remembered there).
    pub memory: Option<Arc<dyn Settings>>,
    /// Where its status is shown.
    pub keepers: Arc<Keepers>,
    /// Where its route hook is registered.
    pub hooks: Arc<crate::model::inbound::RouteHooks>,
}

impl crate::supervisor::Component for KeeperComponent {
    fn name(&self) -> String {
        format!("keeper {}", self.keeper.route)
    }

    fn spec(&self) -> String {
        format!(
            "{:?} {:?}",
            self.keeper.settings,
            self.keeper.verification_token.value()
        )
    }

    fn run(
        self: Box<Self>,
        stop: watch::Receiver<bool>,
    ) -> crate::model::outbound::BoxFuture<'static, ()> {
        let route = self.keeper.route.clone();
        let rc = &self.keeper.settings;
        let keeper = Keeper::new(
            super::platform::platform(
                &self.http,
                &rc.server,
                [&rc.client_id, &rc.client_secret, &rc.jwt],
            ),
            KeeperSettings {
                route: route.clone(),
                address: rc.address.clone(),
                event_filters: rc.event_filters.clone(),
                verification_token: Some(self.keeper.verification_token.value().to_string()),
                expires_in: rc.expires_in,
                renew_before: rc.renew_before.unwrap_or(rc.expires_in / 2),
                check_every: rc.check_every,
            },
            self.memory.clone(),
        );
        // Registered before the task runs: its status shows and its route takes renewal
        // reminders from its start.
        self.keepers.add(&route, keeper.poke(), keeper.status());
        self.hooks.register(
            &route,
            Arc::new(RenewalReminders {
                route: route.clone(),
                poke: keeper.poke(),
            }),
        );
        Box::pin(async move {
            keeper.run(stop).await;
            self.hooks.remove(&route);
            self.keepers.remove(&route);
        })
    }
}

/// The route hook of a keeper's route: a renewal reminder (RingCentral posts one to the
/// webhook address before the subscription expires) makes the keeper look now, and is
/// answered without producing an event.
pub struct RenewalReminders {
    /// The keeper's route.
    pub route: String,
    /// Wakes the keeper.
    pub poke: Arc<Notify>,
}

impl crate::model::inbound::RouteHook for RenewalReminders {
    fn intercept(&self, inbound: &crate::model::inbound::VerifiedInbound) -> Option<&'static str> {
        if !is_renewal_reminder(inbound.payload()) {
            return None;
        }
        tracing::info!(route = %self.route, "subscription renewal reminder: the keeper looks now");
        self.poke.notify_one();
        Some("renewal reminder taken by the subscription keeper")
    }
}

/// Whether a verified RingCentral payload is a subscription's renewal reminder (its `event`
/// is the reminder filter, `/restapi/v1.0/subscription/~?threshold=…&interval=…`, A.1):
/// the keeper's business, not an event to translate.
pub fn is_renewal_reminder(payload: &Value) -> bool {
    payload["event"]
        .as_str()
        .is_some_and(|e| e.starts_with("/restapi/v1.0/subscription/"))
}

/// Whether a configured filter (`~` for "the current account or extension") matches one
/// RingCentral echoed with ids.
pub fn filter_matches(ours: &str, theirs: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.split('/').collect(), theirs.split('/').collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| match x.strip_prefix('~') {
            Some(rest) => y.ends_with(rest) && y.len() > rest.len(),
            None => x == y,
        })
}

/// How long until a subscription's `expirationTime` (zero when past or unreadable).
fn left(subscription: &Value) -> Duration {
    subscription["expirationTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|at| at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .and_then(|d| d.to_std().ok())
        .unwrap_or_default()
}

/// 2 s, doubling, at most 60 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(
        2u64.saturating_mul(1 << failures.saturating_sub(1).min(5))
            .min(60),
    )
}

/// How long the keeper waits before its next look: `check_every`, or sooner when renewal is
/// due sooner; after a create at most [`AFTER_CREATE`] (another instance may have created one
/// at the same moment, and the next look keeps the newest and deletes the other), never
/// longer than `check_every` says. At least a second.
fn next_look(created: bool, until_renewal: Duration, check_every: Duration) -> Duration {
    let soon = if created {
        AFTER_CREATE.min(check_every)
    } else {
        check_every
    };
    until_renewal.min(soon).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check_every` is honoured after a create too (it used to be a fixed 10 s).
    #[test]
    fn the_look_after_a_create_keeps_to_check_every() {
        let hour = Duration::from_secs(3600);
        let s = Duration::from_secs;
        assert_eq!(next_look(true, hour, s(3)), s(3));
        assert_eq!(next_look(true, hour, s(60)), AFTER_CREATE);
        assert_eq!(next_look(false, hour, s(60)), s(60));
        assert_eq!(next_look(false, s(5), s(60)), s(5));
        assert_eq!(next_look(false, Duration::ZERO, s(60)), s(1));
    }

    #[test]
    fn configured_tildes_match_resolved_ids() {
        assert!(filter_matches(
            "/restapi/v1.0/account/~/telephony/sessions",
            "/restapi/v1.0/account/2460114020/telephony/sessions"
        ));
        assert!(filter_matches(
            "/restapi/v1.0/subscription/~?threshold=86400&interval=3600",
            "/restapi/v1.0/subscription/abc?threshold=86400&interval=3600"
        ));
        assert!(!filter_matches(
            "/restapi/v1.0/account/~/presence",
            "/restapi/v1.0/account/1/telephony/sessions"
        ));
        assert!(!filter_matches(
            "/restapi/v1.0/account/~/presence",
            "/restapi/v1.0/account/~/extension/1/presence"
        ));
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
