//! How clones follow their template's new builds (`on_template_change`, `rollout`): keep or
//! replace, in batches of `max_unavailable`, each checked healthy before the next.

use std::time::Duration;

use super::model::DEFAULT_WAIT_FOR_IP_TIMEOUT;

/// What a clone does when its template gets a new build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnTemplateChange {
    /// Stay on the build it was made from.
    #[default]
    Keep,
    /// Be made again from the new build, batch by batch.
    Replace,
}

/// How many clones of a group a rollout replaces at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailable {
    /// A count.
    Count(u32),
    /// A percentage of the group (rounded down, at least one).
    Percent(u32),
}

impl MaxUnavailable {
    /// The batch size for a group of `size` clones.
    ///
    /// ```
    /// use proxfleet::spec::MaxUnavailable;
    /// assert_eq!(MaxUnavailable::Count(2).batch_size(10), 2);
    /// assert_eq!(MaxUnavailable::Percent(25).batch_size(10), 2);
    /// assert_eq!(MaxUnavailable::Percent(10).batch_size(3), 1);
    /// assert_eq!(MaxUnavailable::Count(5).batch_size(3), 3);
    /// ```
    pub fn batch_size(self, size: usize) -> usize {
        let n = match self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => size * p as usize / 100,
        };
        n.clamp(1, size.max(1))
    }
}

impl std::fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxUnavailable::Count(n) => write!(f, "{n}"),
            MaxUnavailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// How a replaced clone is found healthy before the next batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// The guest agent answers `ping` and, for a static address, reports it.
    #[default]
    Agent,
    /// No check.
    None,
}

/// How a clone's `on_template_change: replace` rolls out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Clones replaced at once in its group.
    pub max_unavailable: MaxUnavailable,
    /// The check before the next batch.
    pub health: Health,
    /// How long the check waits (the clone's `wait_for_ip_timeout`).
    pub timeout: Duration,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_unavailable: MaxUnavailable::Count(1),
            health: Health::Agent,
            timeout: DEFAULT_WAIT_FOR_IP_TIMEOUT,
        }
    }
}
