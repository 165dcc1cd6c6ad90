//! Sizes as people write them: `512MiB`, `2GiB`, `10G`, `1.5GiB`.
//!
//! `K`, `M`, `G`, `T` and `KiB` … `TiB` are binary (powers of 1024), as in
//! qemu-img and libvirt; `KB`, `MB`, `GB`, `TB` are decimal. A bare number
//! is refused: it is too easy to mean MiB and get bytes.

/// Parse a size into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(format!(
            "`{text}` is not a size: it must start with a number"
        ));
    }
    let factor: u64 = match unit {
        "" => {
            return Err(format!(
                "`{text}` has no unit: write e.g. `{num}MiB` or `{num}GiB`"
            ));
        }
        "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use MiB, GiB, TiB, or M, G, T)"
            ));
        }
    };
    let bytes = if let Some((int, frac)) = num.split_once('.') {
        if int.is_empty() || frac.is_empty() || frac.contains('.') {
            return Err(format!("`{text}` is not a number with a unit"));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a number with a unit"))?;
        let b = value * factor as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(format!("`{text}` is too large"));
        }
        b as u64
    } else {
        let value: u64 = num.parse().map_err(|_| format!("`{text}` is too large"))?;
        value
            .checked_mul(factor)
            .ok_or_else(|| format!("`{text}` is too large"))?
    };
    Ok(bytes)
}

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// Render bytes compactly (`512MiB`, `2GiB`).
pub fn format_size(bytes: u64) -> String {
    if bytes >= TIB && bytes.is_multiple_of(TIB) {
        format!("{}TiB", bytes / TIB)
    } else if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{bytes}B")
    }
}

/// Render a measured size for reading (`317.2MiB`, `1.5GiB`, `900KiB`):
/// one decimal, the largest unit it reaches.
pub fn format_size_approx(bytes: u64) -> String {
    for (unit, size) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)] {
        if bytes >= size {
            let tenths = (bytes as u128 * 10 + size as u128 / 2) / size as u128;
            return if tenths.is_multiple_of(10) {
                format!("{}{unit}", tenths / 10)
            } else {
                format!("{}.{}{unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_sizes_read_approximately() {
        assert_eq!(format_size_approx(332_652_544), "317.2MiB");
        assert_eq!(format_size_approx(3 * GIB / 2), "1.5GiB");
        assert_eq!(format_size_approx(2 * GIB), "2GiB");
        assert_eq!(format_size_approx(900), "900B");
    }

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("10G"), Ok(10 * GIB));
        assert_eq!(parse_size("1.5GiB"), Ok(3 * GIB / 2));
        assert_eq!(parse_size("2 GiB"), Ok(2 * GIB));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    }

    #[test]
    fn refusals_say_why() {
        assert!(parse_size("2048").unwrap_err().contains("no unit"));
        assert!(parse_size("10X").unwrap_err().contains("unknown unit `X`"));
        assert!(
            parse_size("GiB")
                .unwrap_err()
                .contains("start with a number")
        );
        assert!(
            parse_size("99999999999999999999T")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("1.2.3G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn formats_round_sizes() {
        assert_eq!(format_size(2 * GIB), "2GiB");
        assert_eq!(format_size(768 * MIB), "768MiB");
        assert_eq!(format_size(64 * TIB), "64TiB");
        assert_eq!(format_size(1536 * GIB), "1536GiB");
    }
}
