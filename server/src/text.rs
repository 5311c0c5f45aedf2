//! The one check of caller-given text (task fields, session titles): its
//! length counts characters, as the person typing it and the web app's
//! counters do, not bytes. Paths are not text here: the kernel's limits
//! count bytes, so `files::check_path_text` counts bytes.

use crate::error::{Error, Result};

/// Which characters besides printable ones `field` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controls {
    /// Any but NUL (free text: descriptions, keys and values).
    AllButNul,
    /// None at all (a one-line name: a session title).
    None,
}

/// `value` has at most `max` characters and only the control characters
/// `controls` allows.
pub fn check(field: &str, value: &str, max: usize, controls: Controls) -> Result<()> {
    if value.chars().count() > max {
        return Err(Error::Invalid(format!(
            "{field}: longer than {max} characters"
        )));
    }
    match controls {
        Controls::AllButNul if value.contains('\0') => {
            Err(Error::Invalid(format!("{field}: contains a NUL character")))
        }
        Controls::None if value.chars().any(char::is_control) => Err(Error::Invalid(format!(
            "{field}: contains a control character"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_characters_not_bytes() {
        let four = "ééé\u{1F600}"; // 4 characters, 10 bytes
        assert!(check("t", four, 4, Controls::None).is_ok());
        assert!(check("t", four, 3, Controls::None).is_err());
    }

    #[test]
    fn controls_are_refused_as_the_field_says() {
        assert!(check("d", "a\nb", 10, Controls::AllButNul).is_ok());
        assert!(check("d", "a\0b", 10, Controls::AllButNul).is_err());
        assert!(check("t", "a\nb", 10, Controls::None).is_err());
        assert!(check("t", "a b", 10, Controls::None).is_ok());
    }
}
