//! How a streamed `GET /messages` writes its rows: NDJSON (one list item per line, `raw` with
//! `include=raw`) or CSV (RFC 4180, a header row, formula-leading cells neutralised).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ingest_shared::message::is_msisdn;
use serde::Serialize;

use super::format::Format;

/// One row of export_batch.sql.
#[derive(Debug)]
pub struct ExportRow {
    pub message_id: String,
    pub from_msisdn: String,
    pub to_msisdn: String,
    pub ts: DateTime<Utc>,
    pub ts_raw: String,
    pub text: Option<String>,
    pub msg_type: Option<String>,
    pub source: Option<String>,
    pub raw: Option<sqlx::types::Json<serde_json::Value>>,
}

/// The CSV columns, in order; `from` and `to` as the JSON items name them. `source` follows
/// them only when sources are configured.
pub const CSV_HEADER: [&str; 6] = ["message_id", "from", "to", "ts", "text", "msg_type"];

/// An NDJSON line: the fields of a `GET /messages` item, then `raw` when asked for.
#[derive(Serialize)]
struct Line<'a> {
    message_id: &'a str,
    from: &'a str,
    to: &'a str,
    ts: &'a str,
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_type: Option<&'a str>,
    /// Only when sources are configured; null for a message whose source is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<Option<&'a serde_json::Value>>,
}

/// Writes rows in one streamed format.
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    format: Format,
    include_raw: bool,
    /// Each row names its source (sources are configured).
    with_source: bool,
}

impl Encoder {
    pub fn new(format: Format, include_raw: bool, with_source: bool) -> Self {
        Self {
            format,
            include_raw,
            with_source,
        }
    }

    /// What the response starts with, before any row.
    pub fn header(&self, out: &mut Vec<u8>) -> csv::Result<()> {
        if self.format == Format::Csv {
            let mut writer = csv_writer(out);
            let source = self.with_source.then_some("source");
            writer.write_record(CSV_HEADER.into_iter().chain(source))?;
            writer.flush()?;
        }
        Ok(())
    }

    pub fn rows(&self, rows: &[ExportRow], out: &mut Vec<u8>) -> csv::Result<()> {
        match self.format {
            Format::Csv => {
                let mut writer = csv_writer(out);
                for row in rows {
                    let cells = [
                        cell(&row.message_id),
                        cell(&row.from_msisdn),
                        cell(&row.to_msisdn),
                        cell(&row.ts_raw),
                        cell(row.text.as_deref().unwrap_or("")),
                        cell(row.msg_type.as_deref().unwrap_or("")),
                    ];
                    let source = self
                        .with_source
                        .then(|| cell(row.source.as_deref().unwrap_or("")));
                    writer.write_record(cells.iter().chain(&source).map(|c| c.as_bytes()))?;
                }
                writer.flush()?;
            }
            Format::Ndjson | Format::Json => {
                for row in rows {
                    let line = Line {
                        message_id: &row.message_id,
                        from: &row.from_msisdn,
                        to: &row.to_msisdn,
                        ts: &row.ts_raw,
                        text: row.text.as_deref(),
                        msg_type: row.msg_type.as_deref(),
                        source: self.with_source.then_some(row.source.as_deref()),
                        raw: self.include_raw.then(|| row.raw.as_ref().map(|r| &r.0)),
                    };
                    serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
                    out.push(b'\n');
                }
            }
        }
        Ok(())
    }
}

/// RFC 4180: CRLF after every record, and a field quoted only when it holds a comma, a quote or
/// a line break.
fn csv_writer(out: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out)
}

/// A cell a spreadsheet could take for a formula (`=`, `+`, `-`, `@`, a tab or a carriage return
/// first) is written with a `'` before it, which spreadsheets read as "text follows". A value that
/// is all `+` then digits (the `from` and `to` columns: E.164 numbers, validated on the way in)
/// is left as it is: a spreadsheet can only read it as a number, and the column stays usable as
/// the number it is.
pub fn cell(value: &str) -> Cow<'_, str> {
    let risky = value
        .as_bytes()
        .first()
        .is_some_and(|b| matches!(b, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'));
    if risky && !is_msisdn(value) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_leading_cells_are_neutralised_and_numbers_are_not() {
        for risky in [
            "=1+1", "+1 call", "-2", "@SUM(A1)", "\tx", "\rx", "+", "=+1",
        ] {
            assert_eq!(cell(risky), format!("'{risky}"), "{risky:?}");
        }
        for safe in ["+919876543210", "hello", "", "1=1", "'quoted"] {
            assert_eq!(cell(safe), safe, "{safe:?}");
        }
    }

    fn row(text: &str) -> ExportRow {
        ExportRow {
            message_id: "m,1".into(),
            from_msisdn: "+911".into(),
            to_msisdn: "+142".into(),
            ts: DateTime::UNIX_EPOCH,
            ts_raw: "2025-01-15T10:00:00Z".into(),
            text: Some(text.into()),
            msg_type: None,
            source: None,
            raw: None,
        }
    }

    #[test]
    fn the_source_is_written_only_when_sources_are_configured() {
        let mut known = row("hi");
        known.source = Some("default".into());
        let mut out = Vec::new();
        let csv = Encoder::new(Format::Csv, false, true);
        csv.header(&mut out).unwrap();
        csv.rows(&[known, row("old")], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "message_id,from,to,ts,text,msg_type,source\r\n\
             \"m,1\",+911,+142,2025-01-15T10:00:00Z,hi,,default\r\n\
             \"m,1\",+911,+142,2025-01-15T10:00:00Z,old,,\r\n"
        );
        let mut out = Vec::new();
        Encoder::new(Format::Ndjson, false, true)
            .rows(&[row("old")], &mut out)
            .unwrap();
        assert!(String::from_utf8(out).unwrap().ends_with(
            r#""text":"old","source":null}
"#
        ));
    }

    #[test]
    fn csv_is_rfc_4180() {
        let encoder = Encoder::new(Format::Csv, false, false);
        let mut out = Vec::new();
        encoder.header(&mut out).unwrap();
        encoder
            .rows(&[row("say \"hi\"\nthen, go"), row("=cmd")], &mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "message_id,from,to,ts,text,msg_type\r\n\
             \"m,1\",+911,+142,2025-01-15T10:00:00Z,\"say \"\"hi\"\"\nthen, go\",\r\n\
             \"m,1\",+911,+142,2025-01-15T10:00:00Z,'=cmd,\r\n"
        );
    }

    #[test]
    fn ndjson_lines_are_list_items() {
        let mut out = Vec::new();
        let mut with_raw = row("hi");
        with_raw.raw = Some(sqlx::types::Json(serde_json::json!({"a": 1})));
        Encoder::new(Format::Ndjson, true, false)
            .rows(&[row("hi"), with_raw], &mut out)
            .unwrap();
        Encoder::new(Format::Ndjson, false, false)
            .rows(&[row("hi")], &mut out)
            .unwrap();
        let item = r#""message_id":"m,1","from":"+911","to":"+142","ts":"2025-01-15T10:00:00Z","text":"hi""#;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{{{item},\"raw\":null}}\n{{{item},\"raw\":{{\"a\":1}}}}\n{{{item}}}\n")
        );
    }
}
