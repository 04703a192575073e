//! `PodLogOptions` from a query string, decoded and validated as upstream.

use jiff::{SignedDuration, Timestamp};

/// What a log request asks for, with `sinceSeconds`/`sinceTime` already turned
/// into one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// Records from the end of the file (`tailLines`); `None`: all.
    pub tail_lines: Option<i64>,
    /// Skip records older than this (`sinceSeconds` or `sinceTime`).
    pub since: Option<Timestamp>,
    /// Stop after this many bytes of output (`limitBytes`).
    pub limit_bytes: Option<u64>,
}

/// A log request the agent refuses: `Decode` is a 400, `Invalid` a 422 upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogOptionsError {
    #[error("{0}")]
    Decode(String),
    /// Field errors, each `field: Invalid value: ...` as upstream's aggregate prints them.
    #[error("{}", .0.join(", "))]
    Invalid(Vec<String>),
}

impl LogOptions {
    /// Decodes `PodLogOptions` query parameters as the kubelet's parameter codec
    /// does (booleans: anything but `0`/`false` is true; integers: base 10;
    /// `sinceTime`: RFC 3339), then validates them as `ValidatePodLogOptions`.
    /// `now` anchors `sinceSeconds`.
    pub fn from_query(query: Option<&str>, now: Timestamp) -> Result<LogOptions, LogOptionsError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let first = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let flag =
            |key: &str| first(key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"));
        let int = |key: &str| -> Result<Option<i64>, LogOptionsError> {
            match first(key) {
                None => Ok(None),
                Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                    LogOptionsError::Decode(format!(
                        "strconv.ParseInt: parsing {v:?}: invalid syntax"
                    ))
                }),
            }
        };
        let tail_lines = int("tailLines")?;
        let limit_bytes = int("limitBytes")?;
        let since_seconds = int("sinceSeconds")?;
        let since_time = match first("sinceTime") {
            None | Some("") => None,
            Some(v) => Some(v.parse::<Timestamp>().map_err(|_| {
                LogOptionsError::Decode(format!(
                    "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as RFC 3339"
                ))
            })?),
        };

        let mut errs = Vec::new();
        if let Some(n) = tail_lines.filter(|n| *n < 0) {
            errs.push(format!(
                "tailLines: Invalid value: {n}: must be greater than or equal to 0"
            ));
        }
        if let Some(n) = limit_bytes.filter(|n| *n < 1) {
            errs.push(format!(
                "limitBytes: Invalid value: {n}: must be greater than 0"
            ));
        }
        match (since_seconds, since_time) {
            (Some(_), Some(_)) => errs.push(
                ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            ),
            (Some(n), None) if n < 1 => errs.push(format!(
                "sinceSeconds: Invalid value: {n}: must be greater than 0"
            )),
            _ => {}
        }
        if !errs.is_empty() {
            return Err(LogOptionsError::Invalid(errs));
        }
        let since = match (since_seconds, since_time) {
            (Some(secs), _) => Some(
                now.checked_sub(SignedDuration::from_secs(secs))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, t) => t,
        };
        Ok(LogOptions {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            tail_lines,
            since,
            limit_bytes: limit_bytes.and_then(|n| u64::try_from(n).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn parse(q: &str) -> Result<LogOptions, LogOptionsError> {
        LogOptions::from_query(Some(q), now())
    }

    #[test]
    fn decodes_every_option() {
        let o = parse(
            "follow=true&previous=1&timestamps=yes&tailLines=10&limitBytes=500&sinceSeconds=60",
        )
        .unwrap();
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!(o.tail_lines, Some(10));
        assert_eq!(o.limit_bytes, Some(500));
        assert_eq!(o.since, Some("2024-05-01T11:59:00Z".parse().unwrap()));
        let o = parse("sinceTime=2024-05-01T10%3A00%3A00%2B02%3A00&follow=false").unwrap();
        assert!(!o.follow);
        assert_eq!(o.since, Some("2024-05-01T08:00:00Z".parse().unwrap()));
        assert_eq!(
            LogOptions::from_query(None, now()).unwrap(),
            LogOptions::default()
        );
        // Go's bool decoding: present and not 0/false means true.
        assert!(parse("follow").unwrap().follow);
        assert!(!parse("follow=FALSE").unwrap().follow);
    }

    #[test]
    fn rejects_bad_values_as_upstream() {
        assert_eq!(
            parse("tailLines=abc").unwrap_err(),
            LogOptionsError::Decode("strconv.ParseInt: parsing \"abc\": invalid syntax".into())
        );
        assert!(matches!(
            parse("sinceTime=yesterday"),
            Err(LogOptionsError::Decode(_))
        ));
        assert_eq!(
            parse("tailLines=-1&limitBytes=0").unwrap_err().to_string(),
            "tailLines: Invalid value: -1: must be greater than or equal to 0, \
             limitBytes: Invalid value: 0: must be greater than 0"
        );
        assert_eq!(
            parse("sinceSeconds=0").unwrap_err().to_string(),
            "sinceSeconds: Invalid value: 0: must be greater than 0"
        );
        assert!(parse("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z")
            .unwrap_err()
            .to_string()
            .contains("at most one of `sinceTime` or `sinceSeconds` may be specified"));
        assert_eq!(parse("tailLines=0").unwrap().tail_lines, Some(0));
    }
}
