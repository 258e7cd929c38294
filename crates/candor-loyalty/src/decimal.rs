//! A small exact decimal for amounts and rates ("12.50", "1.5"), so that "1.5 points per
//! currency unit" on an order of 0.29 × 100 earns exactly 29 points, never the 28 that
//! binary floating point would give.
//!
//! A [`Decimal`] is an `i128` count of ten-thousandths (four fractional digits, the
//! precision of every currency Candor meets and of any sensible earning rate). Parsing is
//! strict: at most [`MAX_INTEGER_DIGITS`] integer digits, at most four significant
//! fractional digits (more are refused rather than rounded, so nothing is silently
//! changed), no exponent, no whitespace. With those limits the product of two decimals
//! always fits in an `i128`, so arithmetic here cannot overflow.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Fractional digits a [`Decimal`] keeps.
pub const FRACTION_DIGITS: usize = 4;
/// Integer digits a [`Decimal`] may have (leading zeros not counted): 10^15 is far beyond
/// any amount or rate, and keeps products within `i128`.
pub const MAX_INTEGER_DIGITS: usize = 15;

const SCALE: i128 = 10_000;

/// An exact decimal number with four fractional digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(i128);

/// Why text is not a [`Decimal`]. Messages never repeat the text (it may be someone's
/// data); the caller knows which property or setting it came from.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecimalError {
    #[error("a decimal number cannot be empty")]
    Empty,
    #[error("a decimal number is digits with an optional leading '-' and one '.'")]
    Invalid,
    #[error("a decimal number may have at most {FRACTION_DIGITS} fractional digits")]
    TooPrecise,
    #[error("a decimal number may have at most {MAX_INTEGER_DIGITS} integer digits")]
    TooLarge,
}

impl DecimalError {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "decimal_empty",
            Self::Invalid => "decimal_invalid",
            Self::TooPrecise => "decimal_too_precise",
            Self::TooLarge => "decimal_too_large",
        }
    }
}

impl Decimal {
    pub const ZERO: Decimal = Decimal(0);

    /// Parses `-?digits(.digits)?`: "12.50", "0.1", "-3", "007". Fractional digits past
    /// the fourth are accepted only if they are zeros ("1.50000"); "1.23456" is refused.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        if text.is_empty() {
            return Err(DecimalError::Empty);
        }
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int_part, frac_part) = match rest.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (rest, None),
        };
        if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecimalError::Invalid);
        }
        if let Some(f) = frac_part {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecimalError::Invalid);
            }
        }
        let significant = int_part.trim_start_matches('0');
        if significant.len() > MAX_INTEGER_DIGITS {
            return Err(DecimalError::TooLarge);
        }
        let mut mantissa: i128 = 0;
        for b in significant.bytes() {
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
        let frac = frac_part.unwrap_or("");
        let (kept, dropped) = frac.split_at(frac.len().min(FRACTION_DIGITS));
        if dropped.bytes().any(|b| b != b'0') {
            return Err(DecimalError::TooPrecise);
        }
        for i in 0..FRACTION_DIGITS {
            let digit = kept.as_bytes().get(i).map_or(0, |b| i128::from(b - b'0'));
            mantissa = mantissa * 10 + digit;
        }
        Ok(Self(if negative { -mantissa } else { mantissa }))
    }

    /// A whole number.
    pub fn from_int(n: i64) -> Self {
        Self(i128::from(n) * SCALE)
    }

    /// The value in ten-thousandths ("1.5" is 15000).
    pub fn mantissa(self) -> i128 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// `floor(self × other)` as a whole number, or `None` if it does not fit an `i64`.
    /// Exact: both operands are integers of ten-thousandths, so the product is an integer
    /// of 10^-8 and the floor is one integer division.
    pub fn mul_floor(self, other: Decimal) -> Option<i64> {
        let product = self.0.checked_mul(other.0)?;
        i64::try_from(product.div_euclid(SCALE * SCALE)).ok()
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The shortest exact form: "1.5", "12", "-0.25".
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = SCALE.unsigned_abs();
        let (int, frac) = (abs / scale, abs % scale);
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let digits = format!("{frac:04}");
            write!(f, "{sign}{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parses_plain_forms() {
        assert_eq!(d("12.50").mantissa(), 125_000);
        assert_eq!(d("0.1").mantissa(), 1_000);
        assert_eq!(d("-3").mantissa(), -30_000);
        assert_eq!(d("007").mantissa(), 70_000);
        assert_eq!(d("0.0001").mantissa(), 1);
        assert_eq!(d("1.50000").mantissa(), 15_000);
        assert_eq!(d("-0"), Decimal::ZERO);
        assert_eq!(
            d("999999999999999.9999").mantissa(),
            9_999_999_999_999_999_999
        );
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "", "-", ".5", "5.", "1.2.3", "1e3", " 1", "1 ", "+1", "--1", "1,5", "½",
        ] {
            let err = Decimal::parse(bad).unwrap_err();
            assert!(
                matches!(err, DecimalError::Empty | DecimalError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(Decimal::parse("").unwrap_err().code(), "decimal_empty");
    }

    #[test]
    fn refuses_too_many_digits_rather_than_rounding() {
        assert_eq!(Decimal::parse("1.23456"), Err(DecimalError::TooPrecise));
        assert_eq!(Decimal::parse("0.00001"), Err(DecimalError::TooPrecise));
        assert_eq!(
            Decimal::parse("1000000000000000"),
            Err(DecimalError::TooLarge)
        );
        assert_eq!(
            Decimal::parse(&"9".repeat(400)),
            Err(DecimalError::TooLarge)
        );
        // Leading zeros are not digits of the value.
        assert_eq!(d(&format!("{}1", "0".repeat(100))), Decimal::from_int(1));
        assert_eq!(DecimalError::TooLarge.code(), "decimal_too_large");
    }

    #[test]
    fn products_are_exact() {
        // 0.1 × 3 is 0.3: floor 0 (f64 says 0.30000000000000004, harmless here) ...
        assert_eq!(d("0.1").mul_floor(d("3")), Some(0));
        // ... but 0.29 × 100 is exactly 29, where f64 gives 28.999999999999996.
        assert_eq!(d("0.29").mul_floor(d("100")), Some(29));
        assert_eq!(d("12.50").mul_floor(d("1.5")), Some(18)); // 18.75
        assert_eq!(d("0.1").mul_floor(d("30")), Some(3));
        assert_eq!(d("-0.5").mul_floor(d("1")), Some(-1)); // floor, not truncation
        let huge = d("999999999999999.9999");
        assert_eq!(huge.mul_floor(huge), None);
        assert_eq!(huge.mul_floor(d("1")), Some(999_999_999_999_999));
    }

    #[test]
    fn displays_shortest_exact_form() {
        assert_eq!(d("1.50").to_string(), "1.5");
        assert_eq!(d("12").to_string(), "12");
        assert_eq!(d("-0.25").to_string(), "-0.25");
        assert_eq!(d("0.0001").to_string(), "0.0001");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Decimal::parse(&s);
        }

        #[test]
        fn display_round_trips(m in -999_999_999_999_999_999i128..=999_999_999_999_999_999i128) {
            let x = Decimal(m);
            prop_assert_eq!(Decimal::parse(&x.to_string()), Ok(x));
        }

        #[test]
        fn mul_floor_never_panics(a in any::<i128>(), b in any::<i128>()) {
            let _ = Decimal(a).mul_floor(Decimal(b));
        }
    }
}
