//! Kubernetes name and label syntax: DNS-1123 labels and subdomains, qualified label keys,
//! label values. Messages say what is wrong the way `kubectl` would.

/// A DNS-1123 label: at most 63 characters of `a-z`, `0-9` and `-`, starting and ending
/// alphanumeric (namespaces).
pub fn check_dns1123_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > 63 {
        return Err(format!("{value:?} is longer than 63 characters"));
    }
    if !is_dns_label(value) {
        return Err(format!(
            "{value:?} is not a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels (object names).
pub fn check_dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > 253 {
        return Err(format!("{value:?} is longer than 253 characters"));
    }
    if !value.split('.').all(is_dns_label) {
        return Err(format!(
            "{value:?} is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label key: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns1123_subdomain(prefix).map_err(|e| format!("label key {key:?}: prefix {e}"))?;
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(format!(
            "label key {key:?}: the name part must be 1 to 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters like a label key's name part.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_name(value)) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} must be at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_dns_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_subdomains() {
        let long = "a".repeat(64);
        for (value, label, subdomain) in [
            ("flux-system", true, true),
            ("a", true, true),
            ("registry.credentials", false, true),
            ("Upper", false, false),
            ("-dash", false, false),
            ("dash-", false, false),
            ("under_score", false, false),
            ("", false, false),
            (long.as_str(), false, false),
            ("a..b", false, false),
        ] {
            assert_eq!(check_dns1123_label(value).is_ok(), label, "label {value:?}");
            assert_eq!(
                check_dns1123_subdomain(value).is_ok(),
                subdomain,
                "subdomain {value:?}"
            );
        }
    }

    #[test]
    fn label_keys_and_values() {
        for (key, valid) in [
            ("environment", true),
            ("app.kubernetes.io/name", true),
            ("Env_1.x", true),
            ("example.com/", false),
            ("/name", false),
            ("Bad.Prefix/name", false),
            ("a/b/c", false),
            ("-x", false),
            ("", false),
        ] {
            assert_eq!(check_label_key(key).is_ok(), valid, "key {key:?}");
        }
        for (value, valid) in [
            ("", true),
            ("production", true),
            ("v1.2_3", true),
            ("has space", false),
            ("x-", false),
        ] {
            assert_eq!(check_label_value(value).is_ok(), valid, "value {value:?}");
        }
    }
}
