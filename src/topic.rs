//! Topic names and subscription patterns.
//!
//! A topic name is one or more segments separated by `.`; a segment is 1 to
//! 64 characters from `A-Z a-z 0-9 _ -`; the whole name is at most 255
//! bytes. A pattern is a topic name, or a name prefix followed by `.*`
//! (`orders.*` matches `orders.eu` and `orders.eu.paid`, not `orders`), or
//! `*` alone (every topic).

use core::fmt;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
const MAX_SEGMENT_LEN: usize = 64;

/// Why a topic name or pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_TOPIC_LEN`] bytes.
    TooLong(usize),
    /// A segment between dots is empty (`a..b`, `.a`, `a.`).
    EmptySegment,
    /// A segment is longer than 64 characters.
    SegmentTooLong,
    /// A character outside `A-Z a-z 0-9 _ -` (or a `*` that does not end a
    /// pattern, or any `*` in a topic one publishes to).
    InvalidChar(char),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty topic name"),
            Self::TooLong(n) => write!(f, "topic name of {n} bytes (at most {MAX_TOPIC_LEN})"),
            Self::EmptySegment => f.write_str("empty segment in topic name"),
            Self::SegmentTooLong => write!(f, "topic segment longer than {MAX_SEGMENT_LEN}"),
            Self::InvalidChar(c) => write!(f, "invalid character {c:?} in topic name"),
        }
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name (see the module docs).
///
/// # Errors
///
/// The first rule the name breaks.
pub fn validate_topic(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(name.len()));
    }
    for segment in name.split('.') {
        if segment.is_empty() {
            return Err(TopicError::EmptySegment);
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err(TopicError::SegmentTooLong);
        }
        if let Some(c) = segment
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(TopicError::InvalidChar(c));
        }
    }
    Ok(())
}

/// What a subscription listens to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pattern {
    /// One topic.
    Exact(Box<str>),
    /// Every topic under a prefix: stores `"prefix."`.
    Prefix(Box<str>),
    /// Every topic.
    All,
}

impl Pattern {
    pub(crate) fn parse(text: &str) -> Result<Self, TopicError> {
        if text == "*" {
            return Ok(Self::All);
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            validate_topic(prefix)?;
            return Ok(Self::Prefix(format!("{prefix}.").into()));
        }
        validate_topic(text)?;
        Ok(Self::Exact(text.into()))
    }

    /// True if a message on `topic` (a valid name) reaches this pattern.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Exact(name) => **name == *topic,
            Self::Prefix(prefix) => topic.starts_with(&**prefix),
            Self::All => true,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::All => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders", "orders.eu-west_1", "A.b.C"] {
            assert_eq!(validate_topic(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_topic(""), Err(TopicError::Empty));
        assert_eq!(validate_topic("a..b"), Err(TopicError::EmptySegment));
        assert_eq!(validate_topic(".a"), Err(TopicError::EmptySegment));
        assert_eq!(validate_topic("a."), Err(TopicError::EmptySegment));
        assert_eq!(validate_topic("a b"), Err(TopicError::InvalidChar(' ')));
        assert_eq!(validate_topic("a.*"), Err(TopicError::InvalidChar('*')));
        assert_eq!(validate_topic("é"), Err(TopicError::InvalidChar('é')));
        assert_eq!(
            validate_topic(&"x".repeat(65)),
            Err(TopicError::SegmentTooLong)
        );
        let long = ["x"; 128].join(".");
        assert_eq!(long.len(), MAX_TOPIC_LEN);
        assert_eq!(validate_topic(&long), Ok(()));
        assert!(matches!(
            validate_topic(&["x"; 129].join(".")),
            Err(TopicError::TooLong(257))
        ));
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("orders.*").unwrap();
        assert!(p.matches("orders.eu"));
        assert!(p.matches("orders.eu.paid"));
        assert!(!p.matches("orders"));
        assert!(!p.matches("ordersx.eu"));
        assert!(Pattern::parse("*").unwrap().matches("anything"));
        assert!(Pattern::parse("orders").unwrap().matches("orders"));
        assert!(!Pattern::parse("orders").unwrap().matches("orders.eu"));
        assert_eq!(
            Pattern::parse("orders.*.x"),
            Err(TopicError::InvalidChar('*'))
        );
        assert_eq!(Pattern::parse(".*"), Err(TopicError::Empty));
        assert_eq!(Pattern::parse("orders.*").unwrap().to_string(), "orders.*");
    }
}
