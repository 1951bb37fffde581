//! The rate policy a session asks for (`--policy`): its names on the command line and on the wire.
//!
//! Only the names: the control laws that implement each policy are in `proto::policy`.

use std::fmt;
use std::str::FromStr;

/// Which control law sets the sending rate.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// The configured rate, regardless of loss or delay.
    #[default]
    Fixed,
    /// Find the bottleneck's rate and share it with competing flows.
    Fair,
    /// A scavenger: use what others leave, yield when they want it.
    Low,
}

impl Policy {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fixed => "fixed",
            Policy::Fair => "fair",
            Policy::Low => "low",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "fixed" => Ok(Policy::Fixed),
            "fair" => Ok(Policy::Fair),
            "low" => Ok(Policy::Low),
            other => Err(format!("unknown rate policy '{other}' (use fixed, fair or low)")),
        }
    }
}
