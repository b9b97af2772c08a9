//! Output: numbers with SI suffixes for people, and the one JSON line for scripts.

use std::fmt::Write;

/// A count with a k/M suffix, e.g. `123.4k`.
pub fn si(n: u64) -> String {
    let f = n as f64;
    if f >= 1e6 {
        format!("{:.2}M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}k", f / 1e3)
    } else {
        n.to_string()
    }
}

/// CPU time (user + system) in seconds of a process (this one without a pid), from /proc.
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    parse_cpu_ticks(&std::fs::read_to_string(path).ok()?).map(|t| t as f64 / CLOCK_TICKS)
}

/// Linux's USER_HZ: /proc reports CPU times in these ticks.
const CLOCK_TICKS: f64 = 100.0;

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A JSON object built field by field, in insertion order.
#[derive(Default)]
pub struct Json {
    out: String,
}

/// A JSON value the tool emits.
pub enum Value {
    /// A string.
    Str(String),
    /// An unsigned integer.
    U(u64),
    /// A float (non-finite values become null).
    F(f64),
    /// A boolean.
    B(bool),
}

impl Json {
    /// Adds `key: value`.
    pub fn field(&mut self, key: &str, value: Value) -> &mut Self {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_str(&mut self.out, key);
        self.out.push(':');
        match value {
            Value::Str(s) => push_str(&mut self.out, &s),
            Value::U(n) => write!(self.out, "{n}").expect("write to a string"),
            Value::F(f) if f.is_finite() => {
                write!(self.out, "{}", (f * 1000.0).round() / 1000.0).expect("write to a string")
            }
            Value::F(_) => self.out.push_str("null"),
            Value::B(b) => self.out.push_str(if b { "true" } else { "false" }),
        }
        self
    }

    /// The finished object.
    pub fn finish(&self) -> String {
        if self.out.is_empty() {
            "{}".to_string()
        } else {
            format!("{}}}", self.out)
        }
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                write!(out, "\\u{:04x}", c as u32).expect("write to a string")
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_orders_fields() {
        let mut json = Json::default();
        json.field("a", Value::Str("x\"y\\\n".into()))
            .field("n", Value::U(3))
            .field("f", Value::F(1.23456))
            .field("nan", Value::F(f64::NAN))
            .field("ok", Value::B(false));
        assert_eq!(
            json.finish(),
            r#"{"a":"x\"y\\\u000a","n":3,"f":1.235,"nan":null,"ok":false}"#
        );
        assert_eq!(Json::default().finish(), "{}");
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 1";
        assert_eq!(parse_cpu_ticks(stat), Some(267));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(cpu_secs(None).is_some());
    }

    #[test]
    fn si_suffixes() {
        assert_eq!(si(999), "999");
        assert_eq!(si(12_345), "12.3k");
        assert_eq!(si(2_500_000), "2.50M");
    }
}
