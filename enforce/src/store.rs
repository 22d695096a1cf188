//! `policy::Manager` as the applier's [`Store`]: the one place the
//! enforcement settings become manager settings and manager answers
//! become the applier's strings.

use std::path::Path;
use std::time::SystemTime;

use policy::{CompiledPolicy, Manager, ManagerSettings, ValidationContext};

use crate::applier::Store;
use crate::{EnforceError, EnforceSettings};

/// Opens the manager for these settings (state dir created 0700; history
/// and the audit log loaded).
pub fn open_manager(settings: &EnforceSettings) -> Result<Manager, EnforceError> {
    let manager_settings = ManagerSettings {
        state_dir: settings.state_dir.clone(),
        trust: settings.trust.clone(),
        require_signature: settings.require_signature,
        history_len: settings.history,
        applies_per_minute: settings.applies_per_minute,
        context: ValidationContext { protected: settings.protected.clone() },
    };
    Manager::open(manager_settings).map_err(|error| EnforceError::State(error.to_string()))
}

impl Store for Manager {
    fn propose(&mut self, path: &Path, now: SystemTime) -> Result<CompiledPolicy, String> {
        Manager::propose(self, path, now).map_err(|rejection| rejection.to_string())
    }

    fn commit(&mut self, policy: &CompiledPolicy, what: &str, now: SystemTime) -> Result<(), String> {
        Manager::commit(self, policy, what, now).map_err(|error| error.to_string())
    }

    fn rollback(&mut self, steps: usize, now: SystemTime) -> Result<CompiledPolicy, String> {
        Manager::rollback(self, steps, now).map_err(|rejection| rejection.to_string())
    }

    fn emergency_clear(&mut self, now: SystemTime) -> Result<CompiledPolicy, String> {
        Ok(Manager::emergency_clear(self, now))
    }

    fn current(&self) -> Option<CompiledPolicy> {
        Manager::current(self).cloned()
    }
}
