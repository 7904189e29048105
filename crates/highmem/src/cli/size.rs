//! Memory sizes on the command line, read the way QEMU reads `-m`: a bare number is MiB,
//! a suffix K/M/G/T (optionally followed by `B` or `iB`, any case) gives the unit, and a
//! decimal fraction is allowed (`1.5G`). Anything else is an error, never a guess.

/// Parse a `--ram` value into bytes.
pub fn parse_ram_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size '{text}' (expected e.g. 512M, 4G, 4096 for MiB)");
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let unit = unit.trim_start().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "M" => 20,
        "K" => 10,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut bytes = whole.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if !frac.is_empty() {
        // Up to 9 fractional digits; the fraction of the unit, rounded down to a byte.
        if frac.len() > 9 {
            return Err(bad());
        }
        let f: u64 = frac.parse().map_err(|_| bad())?;
        let scale = 10u64.pow(frac.len() as u32);
        let part = (u128::from(f) << shift) / u128::from(scale);
        bytes = bytes
            .checked_add(u64::try_from(part).map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_style_sizes() {
        assert_eq!(parse_ram_size("4096"), Ok(4 << 30));
        assert_eq!(parse_ram_size("4096M"), Ok(4 << 30));
        assert_eq!(parse_ram_size("4G"), Ok(4 << 30));
        assert_eq!(parse_ram_size("4g"), Ok(4 << 30));
        assert_eq!(parse_ram_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_ram_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_ram_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_ram_size("1048576K"), Ok(1 << 30));
        assert_eq!(parse_ram_size("0"), Ok(0));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "G",
            "12Q",
            "1..5G",
            "1.G",
            "-1G",
            "4 GB extra",
            "99999999999T",
            "0x10",
        ] {
            assert!(parse_ram_size(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_ram_size("12Q").unwrap_err(),
            "invalid size '12Q' (expected e.g. 512M, 4G, 4096 for MiB)"
        );
    }
}
