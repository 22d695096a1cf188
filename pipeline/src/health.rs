//! Per-component state for `/health`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::api::PolicySlot;
use crate::config::Role;

/// Where a component is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Built, not yet running.
    Starting,
    Running,
    /// Running, but not as configured (the reason says how).
    Degraded,
    /// Input closed; finishing what it holds.
    Draining,
    /// Finished cleanly.
    Stopped,
    /// Stopped with an error (the reason says which).
    Failed,
}

/// One component's entry.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentHealth {
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: ComponentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Facts a component wants operators to see next to its state (the
    /// ebpf source: what the host supports and which programs attached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Shared table of every component's state. Written rarely (state changes),
/// read by `/health`; a plain mutex is enough and is never held across an
/// await.
#[derive(Clone, Debug, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
    /// What `POST /policy/…` acts on, registered by the component that
    /// enforces network policy (see `api::policy`).
    policy: PolicySlot,
    /// The running topology's loss ledger, for `GET /ledger` and the
    /// ledger lines of `/metrics`.
    ledger: Arc<Mutex<Option<Arc<crate::ledger::Ledger>>>>,
}

/// Overall status derived from the components.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverallStatus {
    Ok,
    Degraded,
    Failed,
}

/// The `/health` document.
#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    pub status: OverallStatus,
    pub version: &'static str,
    pub components: BTreeMap<String, ComponentHealth>,
}

impl Health {
    /// Adds a component in state `Starting` and returns its handle.
    pub fn register(&self, name: &str, role: Role, type_name: &str) -> HealthHandle {
        let entry = ComponentHealth {
            kind: role.noun(),
            type_name: type_name.to_owned(),
            state: ComponentState::Starting,
            reason: None,
            details: None,
        };
        self.lock().insert(name.to_owned(), entry);
        HealthHandle { health: self.clone(), name: Arc::from(name) }
    }

    /// A snapshot for `/health`.
    pub fn report(&self) -> HealthReport {
        let components = self.lock().clone();
        let status = if components.values().any(|c| c.state == ComponentState::Failed) {
            OverallStatus::Failed
        } else if components.values().any(|c| c.state == ComponentState::Degraded) {
            OverallStatus::Degraded
        } else {
            OverallStatus::Ok
        };
        HealthReport { status, version: env!("CARGO_PKG_VERSION"), components }
    }

    /// Where the enforcing component registers its policy control.
    pub fn policy_control(&self) -> &PolicySlot {
        &self.policy
    }

    /// Installs the running topology's ledger (the engine does, at start).
    pub fn set_ledger(&self, ledger: Arc<crate::ledger::Ledger>) {
        *self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ledger);
    }

    /// The running topology's ledger, for a source that books rows of its
    /// own (a kernel source's programs).
    pub fn ledger_handle(&self) -> Option<Arc<crate::ledger::Ledger>> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A consistent cut of the running topology's ledger, if one runs.
    pub fn ledger(&self) -> Option<crate::ledger::LedgerSnapshot> {
        let ledger = self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        ledger.map(|ledger| ledger.snapshot())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ComponentHealth>> {
        // A panic while holding this lock cannot leave the map half-written
        // (every write is one insert or field store), so poison is ignored.
        self.components.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One component's way to report its state.
#[derive(Clone, Debug)]
pub struct HealthHandle {
    health: Health,
    name: Arc<str>,
}

impl HealthHandle {
    /// Sets the state and its reason (`None` clears it).
    pub fn set(&self, state: ComponentState, reason: Option<String>) {
        if let Some(entry) = self.health.lock().get_mut(&*self.name) {
            entry.state = state;
            entry.reason = reason;
        }
    }

    /// Where a component that enforces network policy registers what the
    /// API's policy endpoints act on (`api::PolicySlot::register`).
    pub fn policy_control(&self) -> &PolicySlot {
        self.health.policy_control()
    }

    /// The whole agent's health (read-only use: e.g. network enforcement
    /// watching the sinks after an apply).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Replaces the component's `details` (see [`ComponentHealth::details`]).
    pub fn set_details(&self, details: serde_json::Value) {
        if let Some(entry) = self.health.lock().get_mut(&*self.name) {
            entry.details = Some(details);
        }
    }

    /// `Starting` → `Running`; any other state (a component that reported
    /// itself degraded before its task began) is left as it is.
    pub fn start(&self) {
        if let Some(entry) = self.health.lock().get_mut(&*self.name) {
            if entry.state == ComponentState::Starting {
                entry.state = ComponentState::Running;
            }
        }
    }

    /// A handle not attached to any table, for components run outside a
    /// topology (tests, benches).
    pub fn detached(name: &str) -> HealthHandle {
        Health::default().register(name, Role::Source, "detached")
    }
}
