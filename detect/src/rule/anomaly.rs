//! L3's rule model: an entity's recent behaviour scored against the
//! baseline learned for it. The rule says what to compare and when the
//! score is worth a detection; the model itself (baselines, warm-up,
//! persistence) lives in [`crate::l3`].
//!
//! Rules that agree on `(entity, feature, kinds, window)` share one
//! baseline per entity (they differ only in `threshold` and `min_events`):
//! the baseline is the model's, not the rule's, so a rule's threshold can
//! be tuned without relearning.

use super::KindSet;

/// L3: fires when an entity's recent window scores above `threshold`
/// against its learned baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    /// What a baseline is kept per.
    pub entity: Entity,
    /// What is compared.
    pub feature: Feature,
    /// The events that feed the feature.
    pub kinds: KindSet,
    /// The score above which the rule fires: smoothed KL divergence (nats)
    /// for the distribution features, robust z for `rate` (spikes only).
    pub threshold: f64,
    /// Events the recent window must hold before it is scored: a
    /// distribution of three events says little.
    pub min_events: u64,
    /// Length of the recent window compared with the baseline (windows are
    /// aligned to multiples of it in event time).
    pub window_ns: u64,
}

/// What a baseline is kept per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// The executable's path.
    Exe,
    /// The executable's path and its parent's: `bash` under `sshd` and
    /// `bash` under `nginx` behave differently.
    ExeParent,
}

impl Entity {
    pub const ALL: [Entity; 2] = [Entity::Exe, Entity::ExeParent];

    /// The name in rule and baseline files.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Exe => "exe",
            Entity::ExeParent => "exe_parent",
        }
    }

    pub fn from_name(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// What an entity's window is compared on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// The distribution of event kinds.
    Kinds,
    /// The distribution of destination port classes.
    PortClass,
    /// The distribution of file-path prefixes.
    PathPrefix,
    /// The event rate.
    Rate,
}

impl Feature {
    pub const ALL: [Feature; 4] = [Feature::Kinds, Feature::PortClass, Feature::PathPrefix, Feature::Rate];

    /// The name in rule and baseline files.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Kinds => "kinds",
            Feature::PortClass => "port_class",
            Feature::PathPrefix => "path_prefix",
            Feature::Rate => "rate",
        }
    }

    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.as_str() == name)
    }
}
