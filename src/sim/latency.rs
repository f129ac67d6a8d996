//! How long a frame takes on a simulated link: the same for every frame, or drawn
//! for each one (uniform in a range, or exponential), so that copies of a query race
//! each other as they do on a real network.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::rng::Rng;

/// A link's latency, per frame. Durations are whole nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// `1ms`: every frame takes this long.
    Constant(u64),
    /// `1ms..5ms`: uniform in `[low, high]`.
    Uniform { low: u64, high: u64 },
    /// `exp:2ms`: exponential with this mean (a long tail of slow frames).
    Exponential { mean: u64 },
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::Constant(1_000_000)
    }
}

impl Latency {
    /// One frame's delay, in nanoseconds. A constant latency draws nothing.
    pub fn draw(&self, rng: &mut Rng) -> u64 {
        match *self {
            Latency::Constant(ns) => ns,
            Latency::Uniform { low, high } => low + rng.next_u64() % (high - low + 1),
            Latency::Exponential { mean } => {
                // 1 - unit() is in (0, 1]: the logarithm is finite.
                let delay = -(mean as f64) * (1.0 - rng.unit()).ln();
                delay.min(u64::MAX as f64 / 4.0) as u64
            }
        }
    }
}

impl FromStr for Latency {
    type Err = String;

    fn from_str(text: &str) -> Result<Latency, String> {
        let text = text.trim();
        if let Some(mean) = text.strip_prefix("exp:") {
            return Ok(Latency::Exponential {
                mean: parse_duration(mean)?,
            });
        }
        if let Some((low, high)) = text.split_once("..") {
            let (low, high) = (parse_duration(low)?, parse_duration(high)?);
            if low > high {
                return Err(format!(
                    "latency range {text}: the low end is above the high end"
                ));
            }
            return Ok(Latency::Uniform { low, high });
        }
        Ok(Latency::Constant(parse_duration(text)?))
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Latency::Constant(ns) => write!(f, "{}", show_duration(ns)),
            Latency::Uniform { low, high } => {
                write!(f, "{}..{}", show_duration(low), show_duration(high))
            }
            Latency::Exponential { mean } => write!(f, "exp:{}", show_duration(mean)),
        }
    }
}

/// `0`, `250us`, `1ms`, `1.5ms`, `2s`, `100ns` as nanoseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || {
        format!("bad duration {text:?}: expected a number and a unit (ns, us, ms, s), such as 1ms or 0.5ms")
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "" if number == 0.0 => 1.0,
        _ => return Err(bad()),
    };
    let ns = number * scale;
    if !ns.is_finite() || ns > Duration::from_secs(3600).as_nanos() as f64 {
        return Err(format!("bad duration {text:?}: at most an hour"));
    }
    Ok(ns.round() as u64)
}

/// Nanoseconds in the largest unit that keeps it short: `1ms`, `250us`, `1.5ms`.
pub fn show_duration(ns: u64) -> String {
    for (unit, scale) in [("s", 1e9), ("ms", 1e6), ("us", 1e3)] {
        if ns as f64 >= scale {
            return format!("{}{unit}", ns as f64 / scale);
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_shows_them_back() {
        for text in ["1ms", "250us", "1.5ms..3ms", "exp:2ms", "0ns"] {
            let latency: Latency = text.parse().unwrap();
            assert_eq!(latency.to_string(), text);
        }
        assert_eq!("0".parse::<Latency>(), Ok(Latency::Constant(0)));
        assert_eq!(
            "1ms..5ms".parse::<Latency>(),
            Ok(Latency::Uniform {
                low: 1_000_000,
                high: 5_000_000
            })
        );
        for bad in ["", "1", "ms", "5ms..1ms", "exp:", "1 parsec", "-1ms", "2h"] {
            assert!(bad.parse::<Latency>().is_err(), "{bad}");
        }
    }

    #[test]
    fn draws_stay_in_range_and_the_exponential_has_its_mean() {
        let mut rng = Rng::new(3);
        let uniform = Latency::Uniform { low: 10, high: 20 };
        for _ in 0..1000 {
            assert!((10..=20).contains(&uniform.draw(&mut rng)));
        }
        let exp = Latency::Exponential { mean: 1_000_000 };
        let mean = (0..20_000).map(|_| exp.draw(&mut rng) as f64).sum::<f64>() / 20_000.0;
        assert!((mean - 1e6).abs() < 5e4, "{mean}");
        assert_eq!(Latency::Constant(7).draw(&mut rng), 7);
    }
}
