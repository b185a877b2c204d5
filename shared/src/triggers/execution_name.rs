use sha2::{Digest, Sha256};

/// A Step Functions execution name derived from what identifies a request,
/// so a duplicate delivery of the same request maps to the same execution
/// (StartExecution then answers `ExecutionAlreadyExists`). 80 characters at
/// most, letters, digits and dashes only.
pub fn execution_name(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("{prefix}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_distinct_and_valid() {
        let a = execution_name("cfn", &["stack", "Res", "req-1"]);
        assert_eq!(a, execution_name("cfn", &["stack", "Res", "req-1"]));
        assert_ne!(a, execution_name("cfn", &["stack", "Res", "req-2"]));
        // Field boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(
            execution_name("x", &["ab", "c"]),
            execution_name("x", &["a", "bc"])
        );
        assert!(a.len() <= 80 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
