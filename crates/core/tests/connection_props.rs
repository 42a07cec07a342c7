//! Property tests (fuzzing) of the connection-string parser: any input, no panic; whatever
//! parses round-trips; well-formed strings always parse to their parts.

use portcullis_core::connection::{parse, ConnectionString, MAX_LEN};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_is_bounded(input in ".{0,700}") {
        if let Ok(parsed) = parse(&input) {
            prop_assert!(input.len() <= MAX_LEN);
            match parsed {
                ConnectionString::Inband { user, account, asset } => {
                    let hash = format!("{user}#{account}@{asset}");
                    let plus = format!("{user}+{account}@{asset}");
                    prop_assert!(hash == input || plus == input, "{} / {} / {}", hash, plus, input);
                }
                ConnectionString::LaunchToken(t) => prop_assert_eq!(t, input),
            }
        }
    }

    #[test]
    fn bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn well_formed_strings_parse(user in "[a-z][a-z0-9._-]{0,30}", account in "[a-z_][a-z0-9_@.-]{0,30}", asset in "[a-z0-9][a-z0-9.-]{0,40}") {
        prop_assert_eq!(
            parse(&format!("{user}#{account}@{asset}")),
            Ok(ConnectionString::Inband { user, account, asset })
        );
    }
}
