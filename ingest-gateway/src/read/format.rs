//! `format` and `include` of `GET /messages`: a page of JSON (the default) or every match
//! streamed as NDJSON or CSV, and what a streamed line carries besides the list item's fields.

use ingest_shared::message::FieldError;

use crate::query::error as query_error;

/// How `GET /messages` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// A page: `limit`, `offset` or `cursor`, and the total.
    #[default]
    Json,
    /// Every match, one JSON object per line (`application/x-ndjson`).
    Ndjson,
    /// Every match, RFC 4180 with a header row (`text/csv`).
    Csv,
}

impl Format {
    pub const NAMES: [&'static str; 3] = ["json", "ndjson", "csv"];

    pub fn is_streamed(self) -> bool {
        self != Format::Json
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8; header=present",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "json" => Some(Format::Json),
            "ndjson" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// What was asked, checked against each other: `format` (absent or empty: `json`), the page
/// parameters that were sent, and `include` (absent or empty: nothing). Returns the format and
/// whether `raw` is included; every error goes to `errors`.
pub fn parse(
    format: Option<&str>,
    page_params_sent: &[&'static str],
    include: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> (Format, bool) {
    let format = match format.filter(|f| !f.is_empty()) {
        None => Format::Json,
        Some(raw) => Format::parse(raw).unwrap_or_else(|| {
            errors.push(query_error(
                "format",
                "enum",
                format!("Input should be {}", quoted_list(&Format::NAMES)),
            ));
            Format::Json
        }),
    };
    if format.is_streamed() {
        for name in page_params_sent {
            errors.push(query_error(
                name,
                "value_error",
                format!(
                    "Value error, {name} cannot be used with format={}: every match is streamed",
                    format.name()
                ),
            ));
        }
    }
    let include_raw = match include.filter(|i| !i.is_empty()) {
        None => false,
        Some("raw") if format == Format::Ndjson => true,
        Some("raw") => {
            errors.push(query_error(
                "include",
                "value_error",
                "Value error, include=raw needs format=ndjson (a CSV cell cannot hold the payload, \
                 and GET /messages/{message_id} returns one message's)",
            ));
            false
        }
        Some(_) => {
            errors.push(query_error("include", "enum", "Input should be 'raw'"));
            false
        }
    };
    (format, include_raw)
}

fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(errors: &[FieldError]) -> Vec<String> {
        errors
            .iter()
            .map(|e| format!("{:?}:{}", e.loc[1], e.kind))
            .collect()
    }

    #[test]
    fn formats_and_their_conflicts() {
        let mut errors = Vec::new();
        assert_eq!(parse(None, &[], None, &mut errors), (Format::Json, false));
        assert_eq!(
            parse(Some(""), &["limit"], Some(""), &mut errors),
            (Format::Json, false)
        );
        assert_eq!(
            parse(Some("ndjson"), &[], Some("raw"), &mut errors),
            (Format::Ndjson, true)
        );
        assert_eq!(
            parse(Some("csv"), &[], None, &mut errors),
            (Format::Csv, false)
        );
        assert!(errors.is_empty());

        parse(Some("xml"), &[], None, &mut errors);
        assert_eq!(errors[0].msg, "Input should be 'json', 'ndjson' or 'csv'");
        errors.clear();
        parse(Some("csv"), &["limit", "cursor"], Some("raw"), &mut errors);
        assert_eq!(
            names(&errors),
            [
                "Key(\"limit\"):value_error",
                "Key(\"cursor\"):value_error",
                "Key(\"include\"):value_error"
            ]
        );
        errors.clear();
        parse(None, &[], Some("raw"), &mut errors);
        parse(Some("ndjson"), &[], Some("everything"), &mut errors);
        assert_eq!(
            names(&errors),
            ["Key(\"include\"):value_error", "Key(\"include\"):enum"]
        );
    }
}
