//! Password generation from a profile, with the operating system's CSPRNG.

use rand::seq::SliceRandom;
use rand::Rng;
use zeroize::Zeroizing;

use crate::VaultError;

/// What generated passwords look like (per asset or platform).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordProfile {
    pub length: usize,
    pub lowercase: bool,
    pub uppercase: bool,
    pub digits: bool,
    pub symbols: bool,
    /// Characters never used (e.g. ones a target's shell or form mangles).
    pub excluded: String,
}

impl Default for PasswordProfile {
    fn default() -> Self {
        PasswordProfile {
            length: 24,
            lowercase: true,
            uppercase: true,
            digits: true,
            symbols: true,
            excluded: "\"'`\\ ".into(),
        }
    }
}

const SYMBOLS: &str = "!#$%&()*+,-./:;<=>?@[]^_{|}~";

impl PasswordProfile {
    fn classes(&self) -> Vec<Vec<char>> {
        let mut classes = Vec::new();
        for (on, set) in [
            (self.lowercase, ('a'..='z').collect::<String>()),
            (self.uppercase, ('A'..='Z').collect::<String>()),
            (self.digits, ('0'..='9').collect::<String>()),
            (self.symbols, SYMBOLS.to_owned()),
        ] {
            if on {
                let chars: Vec<char> = set.chars().filter(|c| !self.excluded.contains(*c)).collect();
                classes.push(chars);
            }
        }
        classes
    }

    pub fn validate(&self) -> Result<(), VaultError> {
        if !(8..=256).contains(&self.length) {
            return Err(VaultError::Profile("length: must be 8 to 256".into()));
        }
        let classes = self.classes();
        if classes.is_empty() {
            return Err(VaultError::Profile("enable at least one character class".into()));
        }
        if classes.iter().any(Vec::is_empty) {
            return Err(VaultError::Profile("excluded: leaves an enabled character class empty".into()));
        }
        if classes.len() > self.length {
            return Err(VaultError::Profile("length: too short for one character of every enabled class".into()));
        }
        Ok(())
    }
}

/// A new password: at least one character of every enabled class, the rest uniformly from
/// all of them, shuffled.
pub fn generate_password(profile: &PasswordProfile) -> Result<Zeroizing<String>, VaultError> {
    profile.validate()?;
    let classes = profile.classes();
    let all: Vec<char> = classes.concat();
    let mut rng = rand::rngs::OsRng;
    let mut chars: Zeroizing<Vec<char>> =
        Zeroizing::new(classes.iter().map(|c| c[rng.gen_range(0..c.len())]).collect());
    while chars.len() < profile.length {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    Ok(Zeroizing::new(chars.iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn generated_passwords_follow_the_profile(length in 8usize..64, lower: bool, upper: bool, digits: bool, symbols: bool) {
            let p = PasswordProfile { length, lowercase: lower, uppercase: upper, digits, symbols, excluded: "0O1lI".into() };
            match generate_password(&p) {
                Ok(pw) => {
                    prop_assert_eq!(pw.chars().count(), length);
                    prop_assert!(!pw.chars().any(|c| "0O1lI".contains(c)));
                    prop_assert_eq!(pw.chars().any(|c| c.is_ascii_lowercase()), lower);
                    prop_assert_eq!(pw.chars().any(|c| c.is_ascii_uppercase()), upper);
                    prop_assert_eq!(pw.chars().any(|c| c.is_ascii_digit()), digits);
                    prop_assert_eq!(pw.chars().any(|c| SYMBOLS.contains(c)), symbols);
                }
                Err(_) => prop_assert!(!(lower || upper || digits || symbols)),
            }
        }
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(generate_password(&PasswordProfile { length: 4, ..Default::default() }).is_err());
        assert!(generate_password(&PasswordProfile {
            digits: true,
            lowercase: false,
            uppercase: false,
            symbols: false,
            excluded: "0123456789".into(),
            length: 12
        })
        .is_err());
        let a = generate_password(&PasswordProfile::default()).unwrap();
        let b = generate_password(&PasswordProfile::default()).unwrap();
        assert_ne!(*a, *b);
    }
}
