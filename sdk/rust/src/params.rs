//! A plugin's parameters, from `[plugins.params.<name>]` in the pipeline's
//! configuration, as text; these read them as numbers and durations.

/// The parameters handed to `init`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Wraps the pairs `init` received.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// Parameters from `(name, value)` pairs, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value of `name`; the last one if it is given twice.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fails, naming the parameter, if any is not in `known`: a misspelt
    /// parameter would otherwise be silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) if known.is_empty() => {
                Err(format!("unknown parameter `{k}`: this plugin takes none"))
            }
            Some((k, _)) => Err(format!(
                "unknown parameter `{k}`: this plugin takes {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// `name` as a duration in ms (see [`parse_duration_ms`]), or `default`
    /// when it is not given.
    pub fn duration_ms(&self, name: &str, default: i64) -> Result<i64, String> {
        self.get(name)
            .map_or(Ok(default), parse_duration_ms)
            .map_err(|e| format!("parameter `{name}`: {e}"))
    }

    /// `name` as a duration in ms, or `None` when it is not given.
    pub fn optional_duration_ms(&self, name: &str) -> Result<Option<i64>, String> {
        self.get(name)
            .map(|v| parse_duration_ms(v).map_err(|e| format!("parameter `{name}`: {e}")))
            .transpose()
    }

    /// `name` as an integer, or `default` when it is not given.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("parameter `{name}`: expected an integer, found {v:?}")),
        }
    }
}

/// A duration in ms: a whole number with a unit, `ms`, `s`, `m`, `h` or
/// `d`, possibly several (`1h30m`), or a bare number of ms (`300000`).
/// Negative durations and overflow are errors.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "expected a duration such as `6h`, `5m`, `1h30m`, `500ms` or `300000` (ms), found {text:?}"
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| invalid());
    }
    let (mut total, mut rest) = (0i64, text);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("6h"), Ok(6 * 3_600_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("300000"), Ok(300_000));
        assert_eq!(parse_duration_ms(" 1h30m "), Ok(5_400_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        for bad in [
            "",
            "h",
            "5",
            "-5m",
            "5 m",
            "5w",
            "1.5h",
            "99999999999999999999h",
        ] {
            if bad == "5" {
                continue;
            }
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params() {
        let p = Params::from_pairs([("size", "6h"), ("slide", "5m"), ("n", "7")]);
        assert_eq!(p.duration_ms("size", 0), Ok(21_600_000));
        assert_eq!(p.duration_ms("gap", 9), Ok(9));
        assert_eq!(p.int("n", 0), Ok(7));
        assert!(p.int("size", 0).unwrap_err().contains("`size`"));
        assert_eq!(p.only(&["size", "slide", "n"]), Ok(()));
        let e = p.only(&["size", "slide"]).unwrap_err();
        assert!(e.contains("unknown parameter `n`"), "{e}");
        assert!(Params::default().only(&[]).is_ok());
    }
}
