//! Values that are valid by construction: once a handler holds an `Email` or a `Password`,
//! nothing further down needs to check it again.

use std::fmt;

pub use common::domain::Invalid;
use unicode_normalization::UnicodeNormalization;

/// An email address, trimmed, in Unicode normalisation form NFKC and lower-cased, so
/// `Ann@Example.com`, `ann@example.com` and the fullwidth `ａｎｎ@example.com` are the same
/// account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The longest address SMTP can carry (RFC 5321 path limit less the angle brackets).
    pub const MAX_LEN: usize = 254;
    const MAX_LOCAL_LEN: usize = 64;

    /// Normalises and checks `raw`. The check is deliberately loose: the only proof an address
    /// works is mail arriving, so this refuses what is plainly not an address and no more.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        // NFKC first: it folds compatibility forms (fullwidth letters, ligatures, the Kelvin
        // sign) into the plain letters they stand for, which lower-casing alone leaves apart.
        let email = raw.trim().nfkc().collect::<String>().to_lowercase();
        let invalid = |why: &str| Invalid::new(format!("email is not valid: {why}"));
        if email.is_empty() {
            return Err(invalid("it is empty"));
        }
        if email.chars().count() > Self::MAX_LEN {
            return Err(invalid("it is longer than 254 characters"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains spaces or control characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("it has no @"));
        };
        if domain.contains('@') {
            return Err(invalid("it has more than one @"));
        }
        if local.is_empty() || local.chars().count() > Self::MAX_LOCAL_LEN {
            return Err(invalid("the part before @ must be 1 to 64 characters"));
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(invalid("the domain must be like example.com"));
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as the user typed it. It is never trimmed (spaces are part of a passphrase)
/// and never printed: `Debug` shows only that one is there.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// The shortest password accepted.
    pub const MIN_CHARS: usize = 8;
    /// The longest password accepted, which also bounds the work one login can ask for.
    pub const MAX_CHARS: usize = 1024;

    /// Checks the length of `raw`.
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(Invalid::new("password must be at least 8 characters long"));
        }
        if chars > Self::MAX_CHARS {
            return Err(Invalid::new(
                "password must be at most 1024 characters long",
            ));
        }
        Ok(Self(raw))
    }

    /// The bytes to hash.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A display name, trimmed, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// The longest name accepted.
    pub const MAX_CHARS: usize = 100;

    /// Trims and checks `raw`. A blank name is refused rather than stored as empty: leaving
    /// the field out is how a client says there is no name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("name must not be blank"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new("name must be at most 100 characters long"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new("name must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registration that passed every check.
#[derive(Debug)]
pub struct NewUser {
    /// The address to register.
    pub email: Email,
    /// The password to hash.
    pub password: Password,
    /// An optional display name.
    pub name: Option<UserName>,
}

/// What a login presents.
#[derive(Debug)]
pub struct Credentials {
    /// The address to look up.
    pub email: Email,
    /// The password to verify. It went through the registration rules too: a password those
    /// rules refuse cannot belong to any account.
    pub password: Password,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Ann.Lee@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "ann.lee@example.com");
    }

    #[test]
    fn an_email_is_normalised_with_nfkc_so_look_alike_spellings_are_one_address() {
        let plain = Email::parse("ann@example.com").unwrap();
        for look_alike in [
            // Fullwidth letters and at sign.
            "\u{ff41}\u{ff4e}\u{ff4e}\u{ff20}example.com",
            "\u{ff21}\u{ff2e}\u{ff2e}@\u{ff25}xample.com",
        ] {
            assert_eq!(Email::parse(look_alike).unwrap(), plain, "{look_alike:?}");
        }
        // A ligature is the letters it joins.
        assert_eq!(
            Email::parse("ann@\u{fb01}rm.com").unwrap().as_str(),
            "ann@firm.com"
        );
        // The Kelvin sign is K in NFKC, so it lower-cases to k.
        assert_eq!(
            Email::parse("\u{212a}im@example.com").unwrap().as_str(),
            "kim@example.com"
        );
        // A precomposed letter and its decomposed spelling are one address.
        assert_eq!(
            Email::parse("zoe\u{308}@example.com").unwrap(),
            Email::parse("zo\u{eb}@example.com").unwrap()
        );
    }

    #[test]
    fn plausible_addresses_are_accepted() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x_y-z@mail.example.museum",
            "zoë@exämple.de",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn addresses_that_cannot_be_addresses_are_refused() {
        for bad in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@@example.com",
            "ann@ex@ample.com",
            "ann lee@example.com",
            "ann@example..com",
            "ann@.example.com",
            "ann@example.com.",
            "ann\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn an_email_longer_than_254_characters_is_refused() {
        let domain = format!("{}.com", "d".repeat(240));
        let at_limit = format!("{}@{domain}", "a".repeat(254 - 1 - domain.len()));
        assert_eq!(at_limit.len(), 254);
        assert!(Email::parse(&at_limit).is_ok());
        let over = format!("a{at_limit}");
        assert!(Email::parse(&over).is_err());
    }

    #[test]
    fn a_local_part_longer_than_64_characters_is_refused() {
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn a_password_needs_at_least_8_characters() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        // Characters, not bytes: seven accented letters are still too short.
        assert!(Password::parse("ééééééé".into()).is_err());
    }

    #[test]
    fn a_password_longer_than_1024_characters_is_refused() {
        assert!(Password::parse("p".repeat(1024)).is_ok());
        assert!(Password::parse("p".repeat(1025)).is_err());
    }

    #[test]
    fn a_password_keeps_its_surrounding_spaces() {
        let password = Password::parse("  spaced out  ".into()).unwrap();
        assert_eq!(password.expose(), b"  spaced out  ");
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::parse("correct horse battery".into()).unwrap();
        let credentials = Credentials {
            email: Email::parse("ann@example.com").unwrap(),
            password,
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("correct horse"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn a_name_is_trimmed_and_limited_to_100_characters() {
        assert_eq!(UserName::parse("  Ann Lee ").unwrap().as_str(), "Ann Lee");
        assert!(UserName::parse(&"n".repeat(100)).is_ok());
        assert!(UserName::parse(&"n".repeat(101)).is_err());
    }

    #[test]
    fn a_blank_or_control_character_name_is_refused() {
        assert!(UserName::parse("   ").is_err());
        assert!(UserName::parse("Ann\u{7}").is_err());
    }
}
