//! Durations as people write them: `8h`, `30m`, `1h30m`, `2d`, `1w`, `90s`.

/// Parse a duration into seconds: one or more `<number><unit>` parts,
/// units `s`, `m`, `h`, `d`, `w`. A bare number is refused (seconds or
/// hours?).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty duration: write e.g. `8h`, `30m` or `1h30m`".into());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: write e.g. `8h`, `30m` or `1h30m`"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too long"))?;
        let unit = rest[digits..].chars().next().ok_or_else(|| {
            format!(
                "`{text}` has no unit: write e.g. `{}h` or `{}m`",
                &rest[..digits],
                &rest[..digits]
            )
        })?;
        let factor = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use s, m, h, d or w)"
                ));
            }
        };
        total = value
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}` is too long"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(total)
}

/// Render seconds compactly (`8h`, `1h30m`, `45s`, `0s`).
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut left = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= size {
            out.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8h"), Ok(28_800));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration(" 2d "), Ok(172_800));
        assert_eq!(parse_duration("1w"), Ok(604_800));
        assert_eq!(parse_duration("90s"), Ok(90));
        for bad in [
            "",
            "8",
            "h",
            "8x",
            "1h30",
            "-1h",
            "1.5h",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(5_400), "1h30m");
        assert_eq!(format_duration(90_061), "1d1h1m1s");
        assert_eq!(format_duration(0), "0s");
    }
}
