//! Message priorities: one lane each.

use core::fmt;

/// The number of priority lanes in every channel.
pub const LANES: usize = 4;

/// The priority of a message; each has its own lane. A receiver always takes
/// from the highest non-empty lane first (`Urgent` before `High` before
/// `Normal` before `Low`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(u8)]
pub enum Priority {
    /// Served before everything else.
    Urgent = 0,
    /// Served after `Urgent`.
    High = 1,
    /// The default lane of `send` and `try_send`.
    #[default]
    Normal = 2,
    /// Served last.
    Low = 3,
}

impl Priority {
    /// Every priority, highest first (the order in which lanes are served).
    pub const ALL: [Priority; LANES] = [
        Priority::Urgent,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// The lane index: 0 for `Urgent` up to 3 for `Low`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The priority of lane `index`, if there is one.
    pub const fn from_index(index: usize) -> Option<Priority> {
        if index < LANES {
            Some(Self::ALL[index])
        } else {
            None
        }
    }

    /// The lowercase name, as in `"urgent"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parsing a priority name failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsePriorityError(String);

impl fmt::Display for ParsePriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown priority {:?} (expected urgent, high, normal or low)",
            self.0
        )
    }
}

impl std::error::Error for ParsePriorityError {}

impl core::str::FromStr for Priority {
    type Err = ParsePriorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParsePriorityError(s.to_owned()))
    }
}
