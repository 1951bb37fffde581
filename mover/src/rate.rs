//! Rates and sizes as users type them: SI suffixes, bits per second for rates.

/// Parses a rate in bits per second with an optional SI suffix (`500M`, `2G`, `10G`, `1.5G`, `800k`).
///
/// Suffixes are decimal (k = 10^3, M = 10^6, G = 10^9, T = 10^12), as link rates are quoted. A trailing
/// `bps`/`bit` or `b` is accepted and ignored.
pub fn parse_rate_bps(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("bps").or_else(|| t.strip_suffix("bit")).unwrap_or(t);
    let (number, multiplier) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c {
                'k' | 'K' => 1e3,
                'm' | 'M' => 1e6,
                'g' | 'G' => 1e9,
                't' | 'T' => 1e12,
                _ => return Err(format!("unknown rate suffix '{c}' in '{text}' (use k, M, G or T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a rate: '{text}' (examples: 500M, 2G, 10G)"))?;
    let bps = value * multiplier;
    if !bps.is_finite() || bps < 1.0 {
        return Err(format!("rate must be at least 1 bit/s: '{text}'"));
    }
    if bps > 1e15 {
        return Err(format!("rate too large: '{text}'"));
    }
    Ok(bps.round() as u64)
}

/// Parses a size in bytes with an optional binary suffix (`64K`, `512M`, `4G` = 4 GiB).
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (number, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let s = match c {
                'k' | 'K' => 10,
                'm' | 'M' => 20,
                'g' | 'G' => 30,
                't' | 'T' => 40,
                _ => return Err(format!("unknown size suffix '{c}' in '{text}' (use K, M, G or T)")),
            };
            (&t[..i], s)
        }
        _ => (t, 0),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("not a size: '{text}' (examples: 64K, 512M, 4G)"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || !(0.0..=1.8e19).contains(&bytes) {
        return Err(format!("size out of range: '{text}'"));
    }
    Ok(bytes.round() as u64)
}

/// Formats bits per second for people: `9.41 Gbit/s`.
pub fn format_rate_bps(bps: f64) -> String {
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gbit/s")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mbit/s")
    } else if bps >= 1e3 {
        (bps / 1e3, "kbit/s")
    } else {
        (bps, "bit/s")
    };
    format!("{v:.2} {unit}")
}

/// Formats a byte count for people: `1.50 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    let (v, unit) = if b >= (1u64 << 30) as f64 {
        (b / (1u64 << 30) as f64, "GiB")
    } else if b >= (1u64 << 20) as f64 {
        (b / (1u64 << 20) as f64, "MiB")
    } else if b >= 1024.0 {
        (b / 1024.0, "KiB")
    } else {
        return format!("{bytes} B");
    };
    format!("{v:.2} {unit}")
}

/// The ceiling of `fair` and `low` when no `--rate` is given: above anything a host sends today.
pub const NO_CEILING_BPS: u64 = 400_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_si_suffixes_in_bits() {
        assert_eq!(parse_rate_bps("500M").unwrap(), 500_000_000);
        assert_eq!(parse_rate_bps("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_rate_bps("10G").unwrap(), 10_000_000_000);
        assert_eq!(parse_rate_bps("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate_bps("800k").unwrap(), 800_000);
        assert_eq!(parse_rate_bps("1000").unwrap(), 1000);
        assert!(parse_rate_bps("fast").is_err());
        assert!(parse_rate_bps("5X").is_err());
        assert!(parse_rate_bps("0").is_err());
        assert!(parse_rate_bps("-1G").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size_bytes("64K").unwrap(), 65536);
        assert_eq!(parse_size_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size_bytes("4G").unwrap(), 4 << 30);
        assert!(parse_size_bytes("x").is_err());
    }
}
