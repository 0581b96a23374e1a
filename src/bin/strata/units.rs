//! Byte counts on the command line and in reports.

use std::fmt;
use std::str::FromStr;

/// A byte count parsed from `4096`, `64KiB`, `1.5GiB`, `2G`, `1e9`… (K, M, G, T, P, E with or
/// without `i`/`iB`/`B` are powers of 1024, as GPU memory sizes are given; an `e` followed by a
/// digit or a sign is an exponent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bytes_of = t.as_bytes();
        let split = (0..bytes_of.len())
            .find(|&i| {
                let exponent = matches!(bytes_of[i], b'e' | b'E')
                    && i > 0
                    && matches!(bytes_of.get(i + 1), Some(b'0'..=b'9' | b'+' | b'-'));
                bytes_of[i].is_ascii_alphabetic() && !exponent
            })
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let shift = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "ki" | "kib" | "kb" => 10,
            "m" | "mi" | "mib" | "mb" => 20,
            "g" | "gi" | "gib" | "gb" => 30,
            "t" | "ti" | "tib" | "tb" => 40,
            "p" | "pi" | "pib" | "pb" => 50,
            "e" | "ei" | "eib" | "eb" => 60,
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB, PiB, EiB)"
                ));
            }
        };
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a byte count (e.g. 4096, 64KiB, 8GiB)"))?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
            return Err(format!("`{s}` is out of range"));
        }
        Ok(Bytes(bytes.round() as u64))
    }
}

/// Formats a byte count for people: `512 B`, `1.50 KiB`, `48.2 MiB`, `80.0 GiB`.
pub struct Human(pub u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        let text = if unit == 0 {
            format!("{} B", self.0)
        } else if value < 10.0 {
            format!("{value:.2} {}", UNITS[unit])
        } else {
            format!("{value:.1} {}", UNITS[unit])
        };
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_junk() {
        assert_eq!("4096".parse(), Ok(Bytes(4096)));
        assert_eq!("64KiB".parse(), Ok(Bytes(64 << 10)));
        assert_eq!("1.5 GiB".parse(), Ok(Bytes(3 << 29)));
        assert_eq!("2g".parse(), Ok(Bytes(2 << 30)));
        assert_eq!("1e9".parse(), Ok(Bytes(1_000_000_000)));
        assert_eq!("16000MiB".parse(), Ok(Bytes(16_000 << 20)));
        assert!("lots".parse::<Bytes>().is_err());
        assert!("5 parsecs".parse::<Bytes>().is_err());
        assert!("-1".parse::<Bytes>().is_err());
        assert_eq!("2PiB".parse(), Ok(Bytes(2 << 50)));
        assert_eq!("15EiB".parse(), Ok(Bytes(15 << 60)));
        assert_eq!("1.5e3KiB".parse(), Ok(Bytes(1500 << 10)));
        assert!("16EiB".parse::<Bytes>().is_err(), "2^64 does not fit");
        assert!("e3".parse::<Bytes>().is_err());
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(Human(512).to_string(), "512 B");
        assert_eq!(Human(1536).to_string(), "1.50 KiB");
        assert_eq!(Human(80 << 30).to_string(), "80.0 GiB");
        assert_eq!(format!("{:>8}", Human(0)), "     0 B");
    }
}
