//! Session ids: `YYYY-MM-DD-<12 lowercase hex>`, the day (UTC) the session
//! was made and 48 random bits. The daemon makes them and checks every id a
//! request names; a client that picks an id itself (the Python client, for
//! a worktree hook) makes it here too, so both agree on the format.

/// The id for day `days` (since 1970-01-01) and 6 random bytes.
pub fn format(days: i64, random: [u8; 6]) -> String {
    let (y, m, d) = civil_from_days(days);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{y:04}-{m:02}-{d:02}-{hex}")
}

/// The id's day (since 1970-01-01) when `id` is a well-formed session id
/// with a real date; `None` for anything else (`..`, `/`, other lengths,
/// upper-case hex, 2026-02-30).
pub fn day_of(id: &str) -> Option<i64> {
    let b = id.as_bytes();
    if b.len() != 23 || b[4] != b'-' || b[7] != b'-' || b[10] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = id.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !id
        .get(11..)?
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || civil_from_days(days) != (y, m as u32, d as u32)
    {
        return None;
    }
    Some(days)
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_id_parses_back_to_its_day() {
        let day = days_from_civil(2026, 11, 30);
        let id = format(day, [0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]);
        assert_eq!(id, "2026-11-30-deadbeef0001");
        assert_eq!(day_of(&id), Some(day));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "..",
            "2026-11-30-deadbeef000",
            "2026-11-30-deadbeef00011",
            "2026-11-30-DEADBEEF0001",
            "2026-02-30-deadbeef0001",
            "2026-13-01-deadbeef0001",
            "2026/11/30-deadbeef0001",
            "2026-11-30-../../etc/pa",
        ] {
            assert_eq!(day_of(bad), None, "{bad:?}");
        }
    }
}
