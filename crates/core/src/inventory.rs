//! Inventory vocabulary (R-VAULT-1): platforms, protocols and account kinds.

use std::fmt;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// The operating system or device family of an asset; decides how passwords are changed.
    /// `directory`: the asset named like a `[directories.NAME]` connection, whose accounts are
    /// directory accounts, changed through the directory.
    Platform {
        Linux => "linux",
        Unix => "unix",
        Windows => "windows",
        NetworkDevice => "network_device",
        Directory => "directory",
        Other => "other",
    }
}

text_enum! {
    /// A protocol an asset is reached by.
    Protocol {
        Ssh => "ssh",
        Rdp => "rdp",
        Telnet => "telnet",
    }
}

text_enum! {
    /// Whether an account lives on the asset itself or in a directory.
    AccountKind {
        Local => "local",
        Directory => "directory",
    }
}

impl Protocol {
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Ssh => 22,
            Protocol::Rdp => 3389,
            Protocol::Telnet => 23,
        }
    }
}
