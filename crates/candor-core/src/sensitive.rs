//! A wrapper for secrets and personal data whose `Debug` and `Display` print a
//! redaction, so that a stray `{:?}` in a log line cannot leak them (the idea of
//! Vector's `SensitiveString`).

use std::fmt;

/// Holds a value that must never be printed. Read it with [`Sensitive::expose`], which
/// makes every place that touches the raw value easy to find.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The raw value. Named so that reviewers see every exposure.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Sensitive::new("alice@example.com".to_string());
        assert_eq!(format!("{s:?} {s}"), "**redacted** **redacted**");
        assert_eq!(s.expose(), "alice@example.com");
    }
}
