use std::fmt;

/// The organization's Admin API key. It has no `Display`, its `Debug` is
/// redacted, and the only way to read it is [`AdminKey::expose`], used once
/// per request to set the header.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(String);

impl AdminKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().trim().to_owned())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replace every occurrence of the key in `text`, for messages that
    /// echo request data back (a defensive measure: the API does not).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 8 {
            return text.to_owned();
        }
        text.replace(&self.0, "[REDACTED]")
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey([REDACTED])")
    }
}
