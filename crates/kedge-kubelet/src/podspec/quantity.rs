//! `resource.Quantity` parsing, enough for the kubelet's needs: the exact
//! value of a quantity as a rational, and upstream's `Value()` (rounded up to
//! an integer) and `MilliValue()` (value times 1000, rounded up).

use std::fmt;

/// A parsed quantity, kept exact as `num / den` (den > 0).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    num: i128,
    den: i128,
}

/// A string that is not a quantity (upstream: `quantities must match the
/// regular expression ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);

fn pow(base: i128, exp: u32) -> Option<i128> {
    base.checked_pow(exp)
}

impl Quantity {
    /// Parses `500m`, `128Mi`, `1G`, `1e3`, `0.5`, `-2`...
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let err = || QuantityError(s.to_string());
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            negative = bytes[i] == b'-';
            i += 1;
        }
        let mut mantissa: i128 = 0;
        let mut frac_digits: u32 = 0;
        let mut digits = 0;
        let mut seen_dot = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(c - b'0')))
                    .ok_or_else(err)?;
                digits += 1;
                if seen_dot {
                    frac_digits += 1;
                }
            } else if c == b'.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return Err(err());
        }
        let suffix = &s[i..];
        let (exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other if other.starts_with(['e', 'E']) => {
                let e: i32 = other[1..].parse().map_err(|_| err())?;
                if other[1..].is_empty() || !(-40..=40).contains(&e) {
                    return Err(err());
                }
                (e, 0)
            }
            _ => return Err(err()),
        };
        let mut num = mantissa;
        let mut den = pow(10, frac_digits).ok_or_else(err)?;
        if exp10 >= 0 {
            num = num
                .checked_mul(pow(10, exp10 as u32).ok_or_else(err)?)
                .ok_or_else(err)?;
        } else {
            den = den
                .checked_mul(pow(10, (-exp10) as u32).ok_or_else(err)?)
                .ok_or_else(err)?;
        }
        num = num.checked_mul(1i128 << exp2).ok_or_else(err)?;
        if negative {
            num = -num;
        }
        Ok(Quantity { num, den })
    }

    /// Upstream's `Value()`: the value rounded up (away from zero for
    /// positive values) to an integer.
    pub fn value(&self) -> i64 {
        clamp(ceil_div(self.num, self.den))
    }

    /// Upstream's `MilliValue()`: value * 1000, rounded up.
    pub fn milli_value(&self) -> i64 {
        clamp(ceil_div(self.num.saturating_mul(1000), self.den))
    }

    pub(crate) fn from_ratio(num: i128, den: i128) -> Quantity {
        Quantity { num, den }
    }

    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    /// The exact value as `(numerator, denominator)`.
    pub(crate) fn ratio(&self) -> (i128, i128) {
        (self.num, self.den)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.num.saturating_mul(other.den)).cmp(&other.num.saturating_mul(self.den))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_forms() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("500m").value(), 1);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("1.5Gi").value(), 3 * 512 * 1024 * 1024);
        assert_eq!(q("100k").value(), 100_000);
        assert_eq!(q("1n").value(), 1);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("-1").value(), -1);
        assert_eq!(q("+2").value(), 2);
        assert_eq!(q("1.1m").milli_value(), 2);
        assert!(q("0").is_zero());
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        for bad in ["", "abc", "1.2.3", "1Mx", "m", "1e", "1i"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }
}
