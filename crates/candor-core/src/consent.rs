//! Consent statuses, the actions people take, the channels they take them through, and
//! the one state machine that turns an action into a new status.
//!
//! **Invariant (off by default):** a purpose with no record is denied. Only
//! [`ConsentStatus::Given`] grants; every other status, and the absence of a record,
//! denies.

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsentStatus {
    Given,
    Refused,
    Withdrawn,
    Expired,
    /// The subject was erased (`Store::erase`): recorded once, under the marker purpose
    /// [`crate::ledger::ERASURE_PURPOSE`], as the subject's last ledger record. Never a
    /// purpose's state: erasure deletes every state row.
    Erased,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Given => "given",
            ConsentStatus::Refused => "refused",
            ConsentStatus::Withdrawn => "withdrawn",
            ConsentStatus::Expired => "expired",
            ConsentStatus::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Given,
            Self::Refused,
            Self::Withdrawn,
            Self::Expired,
            Self::Erased,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    pub fn grants(self) -> bool {
        self == ConsentStatus::Given
    }

    /// Stable byte for the ledger's canonical encoding. Never renumber.
    pub fn code(self) -> u8 {
        match self {
            ConsentStatus::Given => 1,
            ConsentStatus::Refused => 2,
            ConsentStatus::Withdrawn => 3,
            ConsentStatus::Expired => 4,
            ConsentStatus::Erased => 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Grant,
    Refuse,
    Withdraw,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "grant" => Some(Action::Grant),
            "refuse" => Some(Action::Refuse),
            "withdraw" => Some(Action::Withdraw),
            _ => None,
        }
    }
}

/// Where a choice was made. Recorded in the ledger as evidence of how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Prompt,
    PreferenceCenter,
    EmailConfirmation,
    Gpc,
    Imported,
    Api,
    /// An unsubscribe link (or `List-Unsubscribe` one-click POST) in a marketing email.
    Unsubscribe,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Prompt,
        Channel::PreferenceCenter,
        Channel::EmailConfirmation,
        Channel::Gpc,
        Channel::Imported,
        Channel::Api,
        Channel::Unsubscribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Prompt => "prompt",
            Channel::PreferenceCenter => "preference_center",
            Channel::EmailConfirmation => "email_confirmation",
            Channel::Gpc => "gpc",
            Channel::Imported => "imported",
            Channel::Api => "api",
            Channel::Unsubscribe => "unsubscribe",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Stable byte for the ledger's canonical encoding. Never renumber.
    pub fn code(self) -> u8 {
        match self {
            Channel::Prompt => 1,
            Channel::PreferenceCenter => 2,
            Channel::EmailConfirmation => 3,
            Channel::Gpc => 4,
            Channel::Imported => 5,
            Channel::Api => 6,
            Channel::Unsubscribe => 7,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TransitionError {
    #[error("consent for this purpose is not currently given, so it cannot be withdrawn")]
    NotGiven,
}

/// The current recorded state of one purpose for one subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    pub status: ConsentStatus,
    pub notice_version: u32,
}

/// Decides the new status for an action, or `None` when the action changes nothing
/// (so no ledger record is written for it).
///
/// Refusing something that was given is a withdrawal: the ledger must show that a
/// grant ended, and stored data must be stripped of the purpose.
pub fn transition(
    current: Option<Current>,
    action: Action,
    notice_version: u32,
) -> Result<Option<ConsentStatus>, TransitionError> {
    use ConsentStatus::*;
    let status = current.map(|c| c.status);
    Ok(match action {
        Action::Grant => match current {
            Some(c) if c.status == Given && c.notice_version == notice_version => None,
            _ => Some(Given),
        },
        Action::Refuse => match status {
            Some(Given) => Some(Withdrawn),
            Some(Refused) | Some(Withdrawn) => None,
            None | Some(Expired) | Some(Erased) => Some(Refused),
        },
        Action::Withdraw => match status {
            Some(Given) => Some(Withdrawn),
            _ => return Err(TransitionError::NotGiven),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentStatus::*;

    fn cur(status: ConsentStatus, v: u32) -> Option<Current> {
        Some(Current {
            status,
            notice_version: v,
        })
    }

    #[test]
    fn state_machine() {
        assert_eq!(transition(None, Action::Grant, 1), Ok(Some(Given)));
        assert_eq!(transition(cur(Given, 1), Action::Grant, 1), Ok(None));
        assert_eq!(transition(cur(Given, 1), Action::Grant, 2), Ok(Some(Given)));
        assert_eq!(transition(None, Action::Refuse, 1), Ok(Some(Refused)));
        assert_eq!(
            transition(cur(Given, 1), Action::Refuse, 1),
            Ok(Some(Withdrawn))
        );
        assert_eq!(transition(cur(Refused, 1), Action::Refuse, 1), Ok(None));
        assert_eq!(
            transition(cur(Given, 1), Action::Withdraw, 1),
            Ok(Some(Withdrawn))
        );
        assert_eq!(
            transition(cur(Refused, 1), Action::Withdraw, 1),
            Err(TransitionError::NotGiven)
        );
        assert_eq!(
            transition(None, Action::Withdraw, 1),
            Err(TransitionError::NotGiven)
        );
    }

    #[test]
    fn only_given_grants() {
        for s in [Given, Refused, Withdrawn, Expired, Erased] {
            assert_eq!(s.grants(), s == Given);
            assert_eq!(ConsentStatus::parse(s.as_str()), Some(s));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
    }
}
