//! The RFC 7240 `Prefer` request header, as the read API understands it. Unknown or malformed
//! preferences are ignored (the RFC asks servers to), and of a preference given twice the first
//! counts.

use axum::http::{HeaderMap, HeaderName, header};
use utoipa::IntoParams;

pub static PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// How `/messages` computes `total` when it has to count rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Count every match, however many.
    Exact,
    /// Count up to a lower bound, then estimate.
    Estimated,
}

impl Count {
    /// The `Preference-Applied` value.
    pub fn applied(self) -> &'static str {
        match self {
            Count::Exact => "count=exact",
            Count::Estimated => "count=estimated",
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Preferences {
    pub count: Option<Count>,
    /// `consistency=eventual`: do not wait for read-your-writes.
    pub eventual_consistency: bool,
}

impl Preferences {
    pub fn of(headers: &HeaderMap) -> Self {
        let mut prefs = Preferences::default();
        let (mut count_seen, mut consistency_seen) = (false, false);
        let values = headers
            .get_all(header::HeaderName::from_static("prefer"))
            .iter()
            .filter_map(|v| v.to_str().ok());
        for preference in values.flat_map(|v| v.split(',')) {
            // Parameters after `;` qualify a preference; none of ours takes any.
            let head = preference.split(';').next().unwrap_or_default();
            let (name, value) = match head.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim().trim_matches('"')),
                None => (head.trim(), ""),
            };
            if name.eq_ignore_ascii_case("count") && !count_seen {
                count_seen = true;
                prefs.count = match value.to_ascii_lowercase().as_str() {
                    "exact" => Some(Count::Exact),
                    "estimated" => Some(Count::Estimated),
                    _ => None,
                };
            } else if name.eq_ignore_ascii_case("consistency") && !consistency_seen {
                consistency_seen = true;
                prefs.eventual_consistency = value.eq_ignore_ascii_case("eventual");
            }
        }
        prefs
    }
}

/// The header as the OpenAPI document describes it (documentation only; [`Preferences::of`]
/// reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PreferHeader {
    /// `consistency=eventual` skips the read-your-writes wait (for dashboards that poll);
    /// on `/messages`, `count=exact` counts every match and `count=estimated` counts up to
    /// 1,000. Several are separated by commas; unknown ones are ignored.
    #[param(rename = "Prefer", example = "count=exact")]
    prefer: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn prefs(values: &[&str]) -> Preferences {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        Preferences::of(&headers)
    }

    #[test]
    fn reads_count_and_consistency_in_any_form() {
        assert_eq!(prefs(&[]), Preferences::default());
        assert_eq!(prefs(&["count=exact"]).count, Some(Count::Exact));
        assert_eq!(
            prefs(&["return=minimal, COUNT = \"Estimated\" ; x=1"]).count,
            Some(Count::Estimated)
        );
        let both = prefs(&["count=exact", "consistency=eventual"]);
        assert_eq!(both.count, Some(Count::Exact));
        assert!(both.eventual_consistency);
    }

    #[test]
    fn the_first_of_a_repeated_preference_wins_and_unknown_values_are_ignored() {
        assert_eq!(
            prefs(&["count=estimated, count=exact"]).count,
            Some(Count::Estimated)
        );
        assert_eq!(prefs(&["count=planned"]).count, None);
        assert_eq!(prefs(&["count=bogus, count=exact"]).count, None);
        assert!(!prefs(&["consistency=strong"]).eventual_consistency);
        assert!(!prefs(&["consistency"]).eventual_consistency);
    }
}
