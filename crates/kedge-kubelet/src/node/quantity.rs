//! Resource quantities written as the API server's `resource.Quantity`
//! writes them (its canonical form), so a Node posted by kedge reads the
//! same as one posted by the upstream kubelet: `2`, `1900m`, `16331672Ki`,
//! `56403987978`, `110`, `1k`.

/// A byte count in binary-SI form: the largest power-of-1024 suffix that
/// divides it exactly (`Ki`, `Mi`, ...); below 1024 and for values no
/// suffix divides, the plain number.
pub fn binary_si(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut exponent = 0;
    while exponent < SUFFIXES.len() && value.is_multiple_of(1024) {
        value /= 1024;
        exponent += 1;
    }
    match exponent {
        0 => value.to_string(),
        e => format!("{value}{}", SUFFIXES[e - 1]),
    }
}

/// A count in decimal-SI form: `110`, `1k` for 1000, `2M` for 2000000.
pub fn decimal_si(count: u64) -> String {
    const SUFFIXES: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    if count == 0 {
        return "0".to_owned();
    }
    let mut value = count;
    let mut exponent = 0;
    while exponent < SUFFIXES.len() && value.is_multiple_of(1000) {
        value /= 1000;
        exponent += 1;
    }
    match exponent {
        0 => value.to_string(),
        e => format!("{value}{}", SUFFIXES[e - 1]),
    }
}

/// CPU in millicores: whole cores as a decimal-SI count, else `<n>m`.
pub fn millicores(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        decimal_si(millis / 1000)
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_written_like_resource_quantity() {
        assert_eq!(binary_si(0), "0");
        assert_eq!(binary_si(1000), "1000");
        assert_eq!(binary_si(16_331_672 * 1024), "16331672Ki");
        assert_eq!(binary_si(100 * 1024 * 1024), "100Mi");
        assert_eq!(binary_si(2 * 1024 * 1024), "2Mi");
        assert_eq!(binary_si(1024 * 1024 * 1024), "1Gi");
        assert_eq!(binary_si(56_403_987_978), "56403987978");
        assert_eq!(binary_si(1536), "1536");
    }

    #[test]
    fn counts_and_cpus() {
        assert_eq!(decimal_si(110), "110");
        assert_eq!(decimal_si(1000), "1k");
        assert_eq!(decimal_si(0), "0");
        assert_eq!(millicores(2000), "2");
        assert_eq!(millicores(1900), "1900m");
        assert_eq!(millicores(0), "0");
    }
}
