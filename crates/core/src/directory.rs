//! Directory vocabulary shared by the directory client and the store.

/// A distinguished name in the form used for comparisons: lower case, no spaces around `,`
/// and `=` (how directories compare DNs for the attributes Portcullis reads).
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut chars = dn.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' || c == '=' {
            while out.ends_with(' ') {
                out.pop();
            }
            out.push(c);
            while chars.peek() == Some(&' ') {
                chars.next();
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalization() {
        assert_eq!(super::normalize_dn(" CN=A B , OU = x,DC=y "), "cn=a b,ou=x,dc=y");
        assert_eq!(super::normalize_dn(" UID=Bob , OU=People,DC=x"), "uid=bob,ou=people,dc=x");
    }
}
