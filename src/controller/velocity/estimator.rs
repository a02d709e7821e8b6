//! The spend-velocity estimator: per account and principal, the committed hourly burn of what
//! that principal started within the window and has not been stopped since; a `Velocity`
//! `CostSignal` when the burn projected over the horizon reaches the threshold. Counts each
//! `eventID` once, ignores failed calls, and handles out-of-order delivery (a stop that arrives
//! before its start leaves a tombstone the start finds). Pure: the caller passes `now`, and the
//! whole state serialises for the store (decision 173).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::controller::crd::SignalSource;
use crate::controller::signal::CostSignal;
use crate::controller::signal::parse::cents;
use crate::principal::{PrincipalArn, PrincipalKind, name_key};

use super::event::{Call, Effect, PriceRef, Variant};
use super::pricing::{PriceTable, PricedService};

/// Estimator settings (config file section `velocity`, decision 170).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Only what was started within this long before now counts (`1h`).
    pub window: SignedDuration,
    /// The burn is projected over this long to give the signal's impact (`1h`: impact = USD per
    /// hour).
    pub horizon: SignedDuration,
    /// A signal is emitted when the projected spend reaches this (USD), and again each time it
    /// doubles.
    pub signal_at_usd: f64,
    /// Event ids remembered for idempotency (older ones beyond the window are dropped first).
    pub max_events: usize,
    /// Event times later than now by more than this are read as now.
    pub max_future_skew: SignedDuration,
    /// Causing events listed in a signal's summary (the raw payload lists every one).
    pub events_in_summary: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: SignedDuration::from_hours(1),
            horizon: SignedDuration::from_hours(1),
            signal_at_usd: 50.0,
            max_events: 200_000,
            max_future_skew: SignedDuration::from_mins(5),
            events_in_summary: 10,
        }
    }
}

/// Why a call changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The call failed (`errorCode`); nothing was started or stopped.
    FailedCall(String),
    /// The caller is not a role or user (root, an AWS service, a federated user).
    NotAttributable(String),
    /// Not one of the supported calls.
    Unsupported(String),
    /// Older than the window.
    TooOld,
}

impl Ignored {
    /// A sentence for answers and logs.
    pub fn describe(&self) -> String {
        match self {
            Ignored::FailedCall(code) => format!("failed call ({code}) counts nothing"),
            Ignored::NotAttributable(caller) => {
                format!("caller {caller} is not an IAM role or user; nothing to attribute")
            }
            Ignored::Unsupported(name) => format!("{name} is not a priced call"),
            Ignored::TooOld => "older than the velocity window".into(),
        }
    }
}

/// What one event did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Its `eventID` was counted before; nothing changed.
    Duplicate,
    /// It changed nothing (the reason).
    Ignored(Ignored),
    /// It started or stopped resources (or recorded an endpoint configuration).
    Counted,
}

/// One principal's current burn.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Burn {
    /// The account the spend is in.
    pub account: String,
    /// The role or user.
    pub principal: String,
    /// Known committed USD per hour of what it started within the window and is still running.
    pub usd_per_hour: f64,
    /// Running resources counted (priced or not).
    pub resources: usize,
    /// Of those, how many have no price in the snapshot (their spend is unknown, not zero).
    pub unpriced: usize,
    /// The id of the signal this principal's current episode is at, if it crossed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// The result of [`Estimator::observe`].
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// What the event did.
    pub outcome: Outcome,
    /// The burn of every principal the event concerned, after it.
    pub burns: Vec<Burn>,
    /// Signals to hand to intake: new crossings, and crossings not yet acknowledged.
    pub signals: Vec<CostSignal>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Resource {
    event_id: String,
    event_name: String,
    time: Timestamp,
    principal: String,
    region: String,
    what: String,
    usd_per_hour: Option<f64>,
    service: Option<PricedService>,
    stopped: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Episode {
    crossing_event: String,
    level: u32,
    signal_id: String,
    pending: Option<CostSignal>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct PrincipalState {
    account: String,
    arn: String,
    resources: Vec<String>,
    episode: Option<Episode>,
}

/// The estimator's whole state, as the store keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Counted event ids and their event times.
    seen: HashMap<String, Timestamp>,
    /// Started resources by `account/region/key`.
    resources: HashMap<String, Resource>,
    /// Stops that arrived before their start, by resource key.
    tombstones: HashMap<String, Timestamp>,
    /// Per `account|principal identity`.
    principals: HashMap<String, PrincipalState>,
    /// SageMaker endpoint configurations by `account/region/name`.
    endpoint_configs: HashMap<String, (Timestamp, Vec<Variant>)>,
}

impl State {
    /// How many event ids are remembered.
    pub fn events(&self) -> usize {
        self.seen.len()
    }
}

/// The estimator.
#[derive(Clone, Debug)]
pub struct Estimator {
    settings: Settings,
    prices: PriceTable,
    state: State,
    since_prune: usize,
}

/// Events between two full prunes of expired entries.
const PRUNE_EVERY: usize = 4096;

impl Estimator {
    /// An empty estimator.
    pub fn new(settings: Settings, prices: PriceTable) -> Estimator {
        Estimator {
            settings,
            prices,
            state: State::default(),
            since_prune: 0,
        }
    }

    /// An estimator resuming from a stored state; entries older than the window are dropped.
    pub fn restore(settings: Settings, prices: PriceTable, state: State, now: Timestamp) -> Self {
        let mut estimator = Estimator {
            settings,
            prices,
            state,
            since_prune: 0,
        };
        estimator.prune(now);
        estimator
    }

    /// The state, for the store.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The price table in use.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every principal's burn, highest first.
    pub fn burns(&self) -> Vec<Burn> {
        let mut burns: Vec<Burn> = self
            .state
            .principals
            .keys()
            .filter_map(|k| self.burn_of(k))
            .filter(|b| b.resources > 0 || b.signal.is_some())
            .collect();
        burns.sort_by(|a, b| {
            b.usd_per_hour
                .total_cmp(&a.usd_per_hour)
                .then_with(|| a.principal.cmp(&b.principal))
        });
        burns
    }

    /// Marks a signal as handed to intake successfully: it is not returned again.
    pub fn acknowledge(&mut self, signal_id: &str) {
        for state in self.state.principals.values_mut() {
            if let Some(episode) = &mut state.episode
                && episode.signal_id == signal_id
            {
                episode.pending = None;
            }
        }
    }

    /// Counts one call.
    pub fn observe(&mut self, call: &Call, now: Timestamp) -> Observation {
        self.since_prune += 1;
        if self.since_prune >= PRUNE_EVERY || self.state.seen.len() >= self.settings.max_events {
            self.prune(now);
        }
        let time = call.time.min(now + self.settings.max_future_skew);
        let key = call
            .principal
            .as_ref()
            .map(|p| principal_key(&call.account, p));
        if self.state.seen.contains_key(&call.event_id) {
            // A redelivery: nothing changes, but a crossing intake has not taken yet is
            // handed over again (the first delivery may have been answered 503).
            let mut observation = self.observation(Outcome::Duplicate, key.iter().cloned());
            observation.signals = key
                .iter()
                .filter_map(|k| self.pending(k))
                .collect::<Vec<_>>();
            return observation;
        }
        self.state.seen.insert(call.event_id.clone(), time);
        if let Some(code) = &call.error_code {
            return self.observation(Outcome::Ignored(Ignored::FailedCall(code.clone())), None);
        }
        if matches!(call.effect, Effect::Unsupported) {
            return self.observation(
                Outcome::Ignored(Ignored::Unsupported(call.event_name.clone())),
                None,
            );
        }
        if time < now - self.settings.window {
            return self.observation(Outcome::Ignored(Ignored::TooOld), None);
        }
        let scope = format!("{}/{}", call.account, call.region);
        let touched: Vec<String> = match &call.effect {
            Effect::Unsupported => Vec::new(),
            Effect::EndpointConfig { name, variants } => {
                self.state
                    .endpoint_configs
                    .insert(format!("{scope}/{name}"), (time, variants.clone()));
                Vec::new()
            }
            Effect::Stop(keys) => {
                let mut touched = Vec::new();
                for resource in keys {
                    let full = format!("{scope}/{resource}");
                    match self.state.resources.get_mut(&full) {
                        Some(started) => {
                            if !started.stopped {
                                started.stopped = true;
                                let owner = started.principal.clone();
                                if !touched.contains(&owner) {
                                    touched.push(owner);
                                }
                            }
                        }
                        None => {
                            self.state.tombstones.insert(full, time);
                        }
                    }
                }
                touched
            }
            Effect::Start(starts) => {
                let Some(principal) = &call.principal else {
                    return self.observation(
                        Outcome::Ignored(Ignored::NotAttributable(call.caller.clone())),
                        None,
                    );
                };
                let Some(key) = key.clone() else {
                    return self.observation(Outcome::Counted, None);
                };
                for start in starts {
                    let full = format!("{scope}/{}", start.resource);
                    let stopped = self.state.tombstones.remove(&full).is_some();
                    let (service, unit) = self.price(&scope, &call.region, &start.price);
                    let resource = Resource {
                        event_id: call.event_id.clone(),
                        event_name: call.event_name.clone(),
                        time,
                        principal: key.clone(),
                        region: call.region.clone(),
                        what: describe(&start.price, start.quantity),
                        usd_per_hour: unit.map(|u| u * f64::from(start.quantity)),
                        service,
                        stopped,
                    };
                    // The same resource started twice (a second event naming it) keeps the
                    // first start; its burn is not doubled.
                    if self.state.resources.contains_key(&full) {
                        continue;
                    }
                    self.state.resources.insert(full.clone(), resource);
                    let state = self.state.principals.entry(key.clone()).or_insert_with(|| {
                        PrincipalState {
                            account: call.account.clone(),
                            arn: principal.as_str().to_string(),
                            ..PrincipalState::default()
                        }
                    });
                    state.resources.push(full);
                }
                vec![key]
            }
        };
        let mut signals = Vec::new();
        for key in &touched {
            if let Some(signal) = self.step(key, call, now) {
                signals.push(signal);
            }
        }
        let mut observation = self.observation(Outcome::Counted, touched.iter().cloned());
        observation.signals = signals;
        observation
    }

    fn observation(&self, outcome: Outcome, keys: impl IntoIterator<Item = String>) -> Observation {
        Observation {
            outcome,
            burns: keys.into_iter().filter_map(|k| self.burn_of(&k)).collect(),
            signals: Vec::new(),
        }
    }

    fn pending(&self, key: &str) -> Option<CostSignal> {
        self.state
            .principals
            .get(key)?
            .episode
            .as_ref()?
            .pending
            .clone()
    }

    fn price(
        &self,
        scope: &str,
        region: &str,
        price: &PriceRef,
    ) -> (Option<PricedService>, Option<f64>) {
        match price {
            PriceRef::Snapshot(service, key) => {
                (Some(*service), self.prices.hourly(*service, region, key))
            }
            PriceRef::EndpointConfig(name) => {
                let service = Some(PricedService::SageMakerHosting);
                let Some((_, variants)) =
                    self.state.endpoint_configs.get(&format!("{scope}/{name}"))
                else {
                    return (service, None);
                };
                let mut total = 0.0;
                for variant in variants {
                    match self.prices.hourly(
                        PricedService::SageMakerHosting,
                        region,
                        &variant.instance_type,
                    ) {
                        Some(p) => total += p * f64::from(variant.count),
                        None => return (service, None),
                    }
                }
                // A configuration of serverless variants only has no hourly price.
                (service, (total > 0.0).then_some(total))
            }
            PriceRef::Unknown(_) => (None, None),
        }
    }

    /// The live resources of a principal: started within the window, not stopped.
    fn live<'s>(&'s self, state: &'s PrincipalState) -> impl Iterator<Item = &'s Resource> + 's {
        state
            .resources
            .iter()
            .filter_map(|k| self.state.resources.get(k))
            .filter(|r| !r.stopped)
    }

    fn burn_of(&self, key: &str) -> Option<Burn> {
        let state = self.state.principals.get(key)?;
        let mut usd = 0.0;
        let mut resources = 0;
        let mut unpriced = 0;
        for r in self.live(state) {
            resources += 1;
            match r.usd_per_hour {
                Some(p) => usd += p,
                None => unpriced += 1,
            }
        }
        Some(Burn {
            account: state.account.clone(),
            principal: state.arn.clone(),
            usd_per_hour: cents(usd),
            resources,
            unpriced,
            signal: state.episode.as_ref().map(|e| e.signal_id.clone()),
        })
    }

    /// Re-evaluates a principal's episode after `call` changed its burn.
    fn step(&mut self, key: &str, call: &Call, now: Timestamp) -> Option<CostSignal> {
        let burn = self.burn_of(key)?;
        let hours = self.settings.horizon.as_secs_f64() / 3600.0;
        let projected = burn.usd_per_hour * hours;
        let threshold = self.settings.signal_at_usd;
        if !(projected >= threshold && threshold > 0.0) {
            // Below the threshold again (stops lowered it): the episode ends; a later crossing
            // is a new episode with a new signal.
            if let Some(state) = self.state.principals.get_mut(key) {
                state.episode = None;
            }
            return None;
        }
        let level = level_of(projected, threshold);
        let current = self
            .state
            .principals
            .get(key)
            .and_then(|s| s.episode.clone());
        let (crossing, changed) = match &current {
            None => (call.event_id.clone(), true),
            Some(e) => (e.crossing_event.clone(), level > e.level),
        };
        if !changed {
            return current.and_then(|e| e.pending);
        }
        let signal = self.signal(key, &burn, projected, &crossing, level, call, now)?;
        let state = self.state.principals.get_mut(key)?;
        state.episode = Some(Episode {
            crossing_event: crossing,
            level,
            signal_id: signal.id.clone(),
            pending: Some(signal.clone()),
        });
        Some(signal)
    }

    #[allow(clippy::too_many_arguments)]
    fn signal(
        &self,
        key: &str,
        burn: &Burn,
        projected: f64,
        crossing: &str,
        level: u32,
        call: &Call,
        now: Timestamp,
    ) -> Option<CostSignal> {
        let state = self.state.principals.get(key)?;
        let mut live: Vec<&Resource> = self.live(state).collect();
        live.sort_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then_with(|| a.event_id.cmp(&b.event_id))
        });
        let mut events: Vec<&str> = Vec::new();
        for r in &live {
            if !events.contains(&r.event_id.as_str()) {
                events.push(&r.event_id);
            }
        }
        let mut by_service: HashMap<PricedService, f64> = HashMap::new();
        for r in &live {
            if let (Some(s), Some(p)) = (r.service, r.usd_per_hour) {
                *by_service.entry(s).or_default() += p;
            }
        }
        let service = by_service
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(s, _)| s.cost_explorer_service().to_string());
        let parsed = PrincipalArn::parse(&state.arn).ok()?;
        let who = match parsed.kind() {
            PrincipalKind::User => format!("user {}", parsed.name()),
            _ => format!("role {}", parsed.name()),
        };
        let shown: Vec<&str> = events
            .iter()
            .take(self.settings.events_in_summary)
            .copied()
            .collect();
        let more = events.len().saturating_sub(shown.len());
        let mut summary = format!(
            "USD {:.2}/hour started by {who} in {} within {:#} (USD {:.2} over {:#}); {} running resource(s) from {} event(s): {}{}",
            burn.usd_per_hour,
            burn.account,
            self.settings.window,
            projected,
            self.settings.horizon,
            burn.resources,
            events.len(),
            shown.join(", "),
            if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            }
        );
        if burn.unpriced > 0 {
            summary.push_str(&format!(
                "; {} resource(s) of unknown price not included",
                burn.unpriced
            ));
        }
        let resources: Vec<serde_json::Value> = live
            .iter()
            .map(|r| {
                json!({
                    "eventID": r.event_id,
                    "eventName": r.event_name,
                    "eventTime": r.time,
                    "region": r.region,
                    "resource": r.what,
                    "usdPerHour": r.usd_per_hour,
                })
            })
            .collect();
        let id = format!(
            "velocity-{}-{}-{}-{level}",
            burn.account,
            name_key(parsed.name()),
            crossing
        );
        let signal = CostSignal {
            source: SignalSource::Velocity,
            id: id.chars().take(1024).collect(),
            account_id: burn.account.clone(),
            impact_usd: cents(projected),
            service,
            region: Some(call.region.clone()),
            budget_name: None,
            observed_at: call.time.min(now),
            details_url: None,
            summary: Some(summary),
            principal: Some(state.arn.clone()),
            raw: Some(json!({
                "principal": state.arn,
                "usdPerHour": burn.usd_per_hour,
                "horizon": format!("{:#}", self.settings.horizon),
                "window": format!("{:#}", self.settings.window),
                "unpriced": burn.unpriced,
                "priceSnapshot": self.prices.date(),
                "events": events,
                "resources": resources,
            })),
        };
        signal.validate().ok()?;
        Some(signal)
    }

    /// Drops what fell out of the window, and the oldest event ids beyond `max_events`.
    pub fn prune(&mut self, now: Timestamp) {
        self.since_prune = 0;
        let cutoff = now - self.settings.window;
        // Ids are kept a little longer than the window: a replay of an expired event would be
        // ignored as too old anyway, but the margin keeps late redeliveries counted once.
        let id_cutoff = cutoff - self.settings.window;
        self.state.seen.retain(|_, t| *t >= id_cutoff);
        if self.state.seen.len() >= self.settings.max_events {
            // Full: forget the oldest ids down to half the bound (ties broken by id).
            let mut by_age: Vec<(Timestamp, String)> = self
                .state
                .seen
                .iter()
                .map(|(id, t)| (*t, id.clone()))
                .collect();
            by_age.sort_unstable();
            let forget = by_age.len().saturating_sub(self.settings.max_events / 2);
            for (_, id) in by_age.into_iter().take(forget) {
                self.state.seen.remove(&id);
            }
        }
        self.state.resources.retain(|_, r| r.time >= cutoff);
        self.state.tombstones.retain(|_, t| *t >= cutoff);
        self.state
            .endpoint_configs
            .retain(|_, (t, _)| *t >= cutoff - self.settings.window);
        let resources = &self.state.resources;
        self.state.principals.retain(|_, p| {
            p.resources.retain(|k| resources.contains_key(k));
            !p.resources.is_empty()
        });
    }
}

/// `account|partition:account:kind:name` — one key per principal identity and cost account.
fn principal_key(account: &str, principal: &PrincipalArn) -> String {
    format!(
        "{account}|{}:{}:{}:{}",
        principal.partition(),
        principal.account_id(),
        principal.kind().as_str(),
        name_key(principal.name())
    )
}

/// 0 at the threshold, 1 at twice it, 2 at four times, ... (at most 30).
fn level_of(projected: f64, threshold: f64) -> u32 {
    let mut level = 0;
    let mut at = threshold * 2.0;
    while projected >= at && level < 30 {
        level += 1;
        at *= 2.0;
    }
    level
}

fn describe(price: &PriceRef, quantity: u32) -> String {
    let what = match price {
        PriceRef::Snapshot(service, key) => format!("{} {key}", service.as_str()),
        PriceRef::EndpointConfig(name) => format!("sagemaker endpoint (config {name})"),
        PriceRef::Unknown(why) => format!("unpriced: {why}"),
    };
    if quantity > 1 {
        format!("{quantity} x {what}")
    } else {
        what
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::velocity::event::parse_event;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../tests/fixtures/velocity/", $name))
        };
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn now() -> Timestamp {
        at("2026-12-05T02:05:00Z")
    }

    fn estimator(signal_at_usd: f64) -> Estimator {
        Estimator::new(
            Settings {
                signal_at_usd,
                ..Settings::default()
            },
            PriceTable::bundled().unwrap(),
        )
    }

    fn call(text: &str) -> Call {
        parse_event(text).unwrap()
    }

    /// A RunInstances event of `count` instances of `kind`, with its own event and instance ids.
    fn run(id: &str, kind: &str, count: usize, time: &str) -> Call {
        let mut event: serde_json::Value =
            serde_json::from_str(fixture!("run-instances.json")).unwrap();
        event["detail"]["eventID"] = id.into();
        event["detail"]["eventTime"] = time.into();
        let items: Vec<serde_json::Value> = (0..count)
            .map(|k| json!({"instanceId": format!("i-{id}-{k}"), "instanceType": kind}))
            .collect();
        event["detail"]["responseElements"]["instancesSet"]["items"] = items.into();
        call(&event.to_string())
    }

    fn terminate(id: &str, instances: &[String], time: &str) -> Call {
        let mut event: serde_json::Value =
            serde_json::from_str(fixture!("terminate-instances.json")).unwrap();
        event["detail"]["eventID"] = id.into();
        event["detail"]["eventTime"] = time.into();
        let items: Vec<serde_json::Value> =
            instances.iter().map(|i| json!({"instanceId": i})).collect();
        event["detail"]["requestParameters"]["instancesSet"]["items"] = items.into();
        event["detail"]["responseElements"] = serde_json::Value::Null;
        call(&event.to_string())
    }

    const CI: &str = "arn:aws:iam::123456789012:role/ci-deployer";

    fn burn(e: &Estimator, principal: &str) -> f64 {
        e.burns()
            .into_iter()
            .find(|b| b.principal == principal)
            .map(|b| b.usd_per_hour)
            .unwrap_or(0.0)
    }

    #[test]
    fn every_supported_call_of_the_fixtures_is_read_and_priced_against_the_snapshot() {
        let mut e = estimator(1_000_000.0);
        let t = now();
        // RunInstances: 2 x p3.2xlarge at 3.06, attributed to the role (session issuer).
        let o = e.observe(&call(fixture!("run-instances.json")), t);
        assert_eq!(o.outcome, Outcome::Counted);
        assert_eq!(o.burns[0].principal, CI);
        assert_eq!(o.burns[0].usd_per_hour, 6.12);
        assert_eq!(o.burns[0].resources, 2);
        // NAT gateway 0.045; RDS db.m5.large postgres Multi-AZ 0.356; EKS 0.10.
        e.observe(&call(fixture!("create-nat-gateway.json")), t);
        e.observe(&call(fixture!("create-db-instance.json")), t);
        let o = e.observe(&call(fixture!("eks-create-cluster.json")), t);
        assert_eq!(o.burns[0].usd_per_hour, cents(6.12 + 0.045 + 0.356 + 0.10));
        // SageMaker as an IAM user: 4 x ml.p3.2xlarge training (3.825), then an endpoint of
        // 2 x ml.g5.xlarge (1.408) priced through its endpoint configuration.
        let user = "arn:aws:iam::123456789012:user/data-scientist";
        let o = e.observe(&call(fixture!("sagemaker-create-training-job.json")), t);
        assert_eq!(o.burns[0].principal, user);
        assert_eq!(o.burns[0].usd_per_hour, 15.3);
        assert_eq!(
            e.observe(&call(fixture!("sagemaker-create-endpoint-config.json")), t)
                .outcome,
            Outcome::Counted
        );
        let o = e.observe(&call(fixture!("sagemaker-create-endpoint.json")), t);
        assert_eq!(o.burns[0].usd_per_hour, cents(15.3 + 2.0 * 1.408));
        // Every stop lowers the burn of whoever started the resource, whoever stops it.
        let later = at("2026-12-05T02:55:00Z");
        let o = e.observe(&call(fixture!("terminate-instances.json")), later);
        assert_eq!(
            o.burns[0].principal, CI,
            "a user terminated the role's instance"
        );
        assert_eq!(o.burns[0].resources, 4);
        for stop in [
            fixture!("delete-nat-gateway.json"),
            fixture!("delete-db-instance.json"),
            fixture!("eks-delete-cluster.json"),
        ] {
            assert_eq!(e.observe(&call(stop), later).outcome, Outcome::Counted);
        }
        assert_eq!(burn(&e, CI), 3.06);
        e.observe(&call(fixture!("sagemaker-stop-training-job.json")), later);
        e.observe(&call(fixture!("sagemaker-delete-endpoint.json")), later);
        assert_eq!(burn(&e, user), 0.0);
    }

    #[test]
    fn a_failed_call_counts_nothing() {
        let mut e = estimator(1.0);
        let o = e.observe(&call(fixture!("run-instances-failed.json")), now());
        assert_eq!(
            o.outcome,
            Outcome::Ignored(Ignored::FailedCall(
                "Client.InsufficientInstanceCapacity".into()
            ))
        );
        assert!(o.signals.is_empty() && o.burns.is_empty());
        assert!(e.burns().is_empty());
    }

    #[test]
    fn root_and_service_callers_are_not_attributed() {
        let mut e = estimator(1.0);
        let o = e.observe(&call(fixture!("run-instances-root.json")), now());
        assert!(
            matches!(o.outcome, Outcome::Ignored(Ignored::NotAttributable(ref c)) if c.ends_with(":root")),
            "{o:?}"
        );
        assert!(e.burns().is_empty());
    }

    #[test]
    fn an_unknown_price_is_counted_as_unknown_not_zero() {
        let mut e = estimator(1.0);
        let o = e.observe(&call(fixture!("run-instances-unpriced.json")), now());
        assert_eq!(o.outcome, Outcome::Counted);
        assert_eq!(o.burns[0].unpriced, 1);
        assert_eq!(o.burns[0].resources, 1);
        assert!(o.signals.is_empty());
        // With priced spend over the threshold, the signal says what it could not price.
        let o = e.observe(&run("big", "p3.16xlarge", 1, "2026-12-05T02:02:00Z"), now());
        let summary = o.signals[0].summary.clone().unwrap();
        assert!(
            summary.contains("1 resource(s) of unknown price"),
            "{summary}"
        );
        let raw = o.signals[0].raw.clone().unwrap();
        assert!(
            raw["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["usdPerHour"].is_null())
        );
    }

    #[test]
    fn replays_count_once() {
        let mut e = estimator(1_000.0);
        let first = run("e1", "m5.large", 3, "2026-12-05T02:01:00Z");
        assert_eq!(e.observe(&first, now()).outcome, Outcome::Counted);
        for _ in 0..5 {
            let o = e.observe(&first, now());
            assert_eq!(o.outcome, Outcome::Duplicate);
            assert_eq!(o.burns[0].usd_per_hour, 0.29);
        }
        assert_eq!(burn(&e, CI), cents(3.0 * 0.096));
        // A second event naming the same instance (a different eventID) does not double it.
        let mut again = first.clone();
        again.event_id = "e1-bis".into();
        e.observe(&again, now());
        assert_eq!(burn(&e, CI), cents(3.0 * 0.096));
    }

    #[test]
    fn a_burst_crosses_once_and_names_its_events() {
        let mut e = estimator(50.0);
        let mut signals = Vec::new();
        for k in 0..20 {
            let o = e.observe(
                &run(&format!("b{k:02}"), "p3.2xlarge", 1, "2026-12-05T02:01:00Z"),
                now(),
            );
            assert_eq!(o.outcome, Outcome::Counted);
            signals.extend(o.signals.clone());
            for s in &o.signals {
                e.acknowledge(&s.id);
            }
        }
        // 17 x 3.06 = 52.02 crosses 50; nothing else until 100.
        assert_eq!(signals.len(), 1, "{signals:?}");
        let s = &signals[0];
        assert_eq!(s.source, SignalSource::Velocity);
        assert_eq!(s.principal.as_deref(), Some(CI));
        assert_eq!(s.impact_usd, 52.02);
        assert_eq!(s.account_id, "123456789012");
        assert_eq!(
            s.service.as_deref(),
            Some("Amazon Elastic Compute Cloud - Compute")
        );
        assert!(
            s.id.contains("ci-deployer") && s.id.contains("b16"),
            "{}",
            s.id
        );
        let summary = s.summary.clone().unwrap();
        assert!(
            summary.contains("USD 52.02/hour started by role ci-deployer"),
            "{summary}"
        );
        assert!(
            summary.contains("b00") && summary.contains("(+7 more)"),
            "{summary}"
        );
        assert_eq!(
            s.raw.clone().unwrap()["events"].as_array().unwrap().len(),
            17
        );
        s.validate().unwrap();
        // Doubling the burn gives a second signal of the same episode.
        let o = e.observe(&run("b20", "p3.16xlarge", 2, "2026-12-05T02:01:00Z"), now());
        assert_eq!(o.signals.len(), 1);
        assert!(o.signals[0].id.ends_with("-b16-1") || o.signals[0].id.ends_with("-b16-2"));
    }

    #[test]
    fn a_crossing_intake_did_not_take_is_handed_over_again_on_a_replay() {
        let mut e = estimator(5.0);
        let crossing = run("x1", "p3.2xlarge", 2, "2026-12-05T02:01:00Z");
        let first = e.observe(&crossing, now());
        assert_eq!(first.signals.len(), 1);
        // Intake failed (503): EventBridge redelivers the same event.
        let replay = e.observe(&crossing, now());
        assert_eq!(replay.outcome, Outcome::Duplicate);
        assert_eq!(replay.signals, first.signals);
        e.acknowledge(&first.signals[0].id);
        assert!(e.observe(&crossing, now()).signals.is_empty());
    }

    #[test]
    fn terminations_lower_the_burn_and_end_the_episode() {
        let mut e = estimator(5.0);
        let o = e.observe(&run("t1", "p3.2xlarge", 2, "2026-12-05T02:01:00Z"), now());
        let first = o.signals[0].id.clone();
        e.acknowledge(&first);
        let o = e.observe(
            &terminate(
                "t2",
                &["i-t1-0".into(), "i-t1-1".into()],
                "2026-12-05T02:03:00Z",
            ),
            now(),
        );
        assert_eq!(o.burns[0].usd_per_hour, 0.0);
        assert_eq!(o.burns[0].signal, None, "the episode ended");
        // A new crossing after that is a new signal.
        let o = e.observe(&run("t3", "p3.2xlarge", 2, "2026-12-05T02:04:00Z"), now());
        assert_eq!(o.signals.len(), 1);
        assert_ne!(o.signals[0].id, first);
    }

    #[test]
    fn a_termination_delivered_before_its_launch_still_counts() {
        let mut e = estimator(5.0);
        let o = e.observe(
            &terminate("o2", &["i-o1-0".into()], "2026-12-05T02:03:00Z"),
            now(),
        );
        assert_eq!(o.outcome, Outcome::Counted);
        let o = e.observe(&run("o1", "p3.2xlarge", 2, "2026-12-05T02:01:00Z"), now());
        assert_eq!(
            o.burns[0].usd_per_hour, 3.06,
            "one of the two was already terminated"
        );
        assert_eq!(o.burns[0].resources, 1);
        assert!(o.signals.is_empty(), "3.06 < 5");
    }

    #[test]
    fn only_the_window_counts() {
        let mut e = estimator(5.0);
        let o = e.observe(&run("old", "p3.2xlarge", 4, "2026-12-05T00:30:00Z"), now());
        assert_eq!(o.outcome, Outcome::Ignored(Ignored::TooOld));
        e.observe(&run("w1", "p3.2xlarge", 1, "2026-12-05T02:01:00Z"), now());
        assert_eq!(burn(&e, CI), 3.06);
        e.prune(at("2026-12-05T03:02:00Z"));
        assert!(e.burns().is_empty(), "started more than the window ago");
        // Ids are remembered a window longer than the resources.
        assert_eq!(
            e.state().events(),
            1,
            "w1 stays, old (two windows back) goes"
        );
    }

    #[test]
    fn the_state_survives_a_round_trip_through_json() {
        let mut e = estimator(5.0);
        let crossing = run("s1", "p3.2xlarge", 2, "2026-12-05T02:01:00Z");
        let signal = e.observe(&crossing, now()).signals[0].clone();
        let text = serde_json::to_string(e.state()).unwrap();
        let state: State = serde_json::from_str(&text).unwrap();
        let mut back = Estimator::restore(
            Settings {
                signal_at_usd: 5.0,
                ..Settings::default()
            },
            PriceTable::bundled().unwrap(),
            state,
            now(),
        );
        assert_eq!(back.burns(), e.burns());
        let replay = back.observe(&crossing, now());
        assert_eq!(
            replay.outcome,
            Outcome::Duplicate,
            "counted once across the restart"
        );
        assert_eq!(
            replay.signals,
            vec![signal],
            "still pending after the restart"
        );
    }

    #[test]
    fn event_ids_are_bounded() {
        let mut e = Estimator::new(
            Settings {
                max_events: 1000,
                signal_at_usd: 1e9,
                ..Settings::default()
            },
            PriceTable::bundled().unwrap(),
        );
        for k in 0..5000 {
            let mut c = run(&format!("n{k}"), "t3.micro", 1, "2026-12-05T02:01:00Z");
            c.effect = Effect::Unsupported;
            e.observe(&c, now());
        }
        assert!(e.state().events() <= 1000, "{}", e.state().events());
    }

    #[test]
    fn levels_double() {
        assert_eq!(level_of(50.0, 50.0), 0);
        assert_eq!(level_of(99.9, 50.0), 0);
        assert_eq!(level_of(100.0, 50.0), 1);
        assert_eq!(level_of(450.0, 50.0), 3);
        assert_eq!(level_of(f64::MAX, 50.0), 30);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::controller::velocity::event::{Start, parse_event};
    use proptest::prelude::*;

    fn launch(id: usize) -> Call {
        let text = include_str!("../../../tests/fixtures/velocity/run-instances.json");
        let mut call = parse_event(text).unwrap();
        call.event_id = format!("run-{id}");
        call.effect = Effect::Start(vec![Start {
            resource: format!("ec2:i-{id}"),
            price: PriceRef::Snapshot(PricedService::Ec2, "m5.large".into()),
            quantity: 1,
        }]);
        call
    }

    fn stop(id: usize) -> Call {
        let mut call = launch(id);
        call.event_id = format!("stop-{id}");
        call.principal = None;
        call.effect = Effect::Stop(vec![format!("ec2:i-{id}")]);
        call
    }

    proptest! {
        /// Whatever the delivery order and however often each event is delivered, the burn is
        /// the price of the launched instances that were not terminated.
        #[test]
        fn order_and_repetition_do_not_change_the_burn(
            launched in proptest::collection::btree_set(0usize..40, 0..40),
            stopped in proptest::collection::btree_set(0usize..40, 0..40),
            order in proptest::collection::vec(any::<u16>(), 0..200),
            repeats in proptest::collection::vec(0usize..3, 80),
        ) {
            let mut events: Vec<Call> = Vec::new();
            for (n, id) in launched.iter().enumerate() {
                for _ in 0..=repeats[n % repeats.len()] {
                    events.push(launch(*id));
                }
            }
            for (n, id) in stopped.iter().enumerate() {
                for _ in 0..=repeats[(n + 40) % repeats.len()] {
                    events.push(stop(*id));
                }
            }
            // A deterministic shuffle from `order`.
            for (i, r) in order.iter().enumerate() {
                if events.len() > 1 {
                    let a = i % events.len();
                    let b = usize::from(*r) % events.len();
                    events.swap(a, b);
                }
            }
            let mut e = Estimator::new(
                Settings { signal_at_usd: 1e9, ..Settings::default() },
                PriceTable::bundled().unwrap(),
            );
            let now: Timestamp = "2026-12-05T02:05:00Z".parse().unwrap();
            for call in &events {
                e.observe(call, now);
            }
            let running = launched.difference(&stopped).count();
            let burn = e.burns().first().map(|b| b.usd_per_hour).unwrap_or(0.0);
            prop_assert_eq!(burn, cents(running as f64 * 0.096));
            prop_assert!(e.burns().iter().all(|b| b.usd_per_hour >= 0.0));
        }

        /// Hostile text never panics the event reader.
        #[test]
        fn any_text_is_read_or_refused(text in ".{0,400}") {
            let _ = crate::controller::velocity::event::is_cloudtrail_event(&text);
            let _ = parse_event(&text);
        }

        /// A fixture with one field replaced by any JSON value is read or refused, never a panic.
        #[test]
        fn any_field_value_is_read_or_refused(
            field in prop_oneof![
                Just("eventID"), Just("eventTime"), Just("awsRegion"), Just("userIdentity"),
                Just("requestParameters"), Just("responseElements"), Just("errorCode"),
                Just("recipientAccountId"), Just("eventSource"), Just("eventName"),
            ],
            value in prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,20}".prop_map(serde_json::Value::from),
                Just(json!([1, "a", {}])),
                Just(json!({"instancesSet": {"items": [{"instanceId": 5}]}})),
            ],
        ) {
            let text = include_str!("../../../tests/fixtures/velocity/run-instances.json");
            let mut event: serde_json::Value = serde_json::from_str(text).unwrap();
            event["detail"][field] = value;
            if let Ok(call) = parse_event(&event.to_string()) {
                let mut e = Estimator::new(Settings::default(), PriceTable::bundled().unwrap());
                let now: Timestamp = "2026-12-05T02:05:00Z".parse().unwrap();
                e.observe(&call, now);
            }
        }
    }
}
