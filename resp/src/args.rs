//! A cursor over a request's arguments, with Redis's parsing rules.

use bytes::Bytes;

use crate::error::CommandError;

/// The arguments after the command name, consumed front to back.
/// Arguments are borrowed from the request and cloned (a reference count)
/// as they are taken, so the caller keeps the request (the slow log shows it).
#[derive(Debug)]
pub struct Args<'a> {
    items: std::iter::Cloned<std::slice::Iter<'a, Bytes>>,
}

impl<'a> Args<'a> {
    /// Wraps the arguments (without the command name).
    pub fn new(items: &'a [Bytes]) -> Self {
        Args {
            items: items.iter().cloned(),
        }
    }

    /// How many arguments are left.
    pub fn remaining(&self) -> usize {
        self.items.len()
    }

    /// The next argument, or a syntax error if there is none.
    pub fn bytes(&mut self) -> Result<Bytes, CommandError> {
        self.items.next().ok_or(CommandError::Syntax)
    }

    /// The next argument if any.
    pub fn next_opt(&mut self) -> Option<Bytes> {
        self.items.next()
    }

    /// The next argument as (lossy) text, for option names.
    pub fn string(&mut self) -> Result<String, CommandError> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }

    /// The next argument upper-cased, for keywords.
    pub fn keyword(&mut self) -> Result<String, CommandError> {
        Ok(self.string()?.to_ascii_uppercase())
    }

    /// The next argument as an `i64`, with Redis's strictness.
    pub fn int(&mut self) -> Result<i64, CommandError> {
        parse_int(&self.bytes()?)
    }

    /// The next argument as a finite `f64`.
    pub fn float(&mut self) -> Result<f64, CommandError> {
        parse_float(&self.bytes()?)
    }

    /// All remaining arguments.
    pub fn rest(&mut self) -> Vec<Bytes> {
        self.items.by_ref().collect()
    }

    /// Errors with a syntax error if anything is left.
    pub fn finish(&self) -> Result<(), CommandError> {
        if self.items.len() == 0 {
            Ok(())
        } else {
            Err(CommandError::Syntax)
        }
    }
}

/// Parses a decimal `i64` the way Redis does: no spaces, no `+`, no leading
/// zeros beyond a single `0`.
pub fn parse_int(raw: &[u8]) -> Result<i64, CommandError> {
    let s = std::str::from_utf8(raw).map_err(|_| CommandError::NotInteger)?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    if !well_formed {
        return Err(CommandError::NotInteger);
    }
    s.parse().map_err(|_| CommandError::NotInteger)
}

/// Parses a float argument; `inf` and `-inf` are accepted, NaN is not.
pub fn parse_float(raw: &[u8]) -> Result<f64, CommandError> {
    let s = std::str::from_utf8(raw).map_err(|_| CommandError::NotFloat)?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(CommandError::NotFloat);
    }
    let value: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s.parse().map_err(|_| CommandError::NotFloat)?,
    };
    if value.is_nan() {
        return Err(CommandError::NotFloat);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_int(b"42"), Ok(42));
        assert_eq!(parse_int(b"-7"), Ok(-7));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"+1",
            b"01",
            b"-0",
            b"1.5",
            b"abc",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_int(bad), Err(CommandError::NotInteger), "{bad:?}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float(b"1.5"), Ok(1.5));
        assert_eq!(parse_float(b"-inf"), Ok(f64::NEG_INFINITY));
        assert!(parse_float(b"nan").is_err());
        assert!(parse_float(b"x").is_err());
    }
}
