//! The report as JSON, CSV or one self-contained HTML page.

use super::{Report, WorkspaceRow};

/// The page: styles and script inline, no network at view time. The report
/// is embedded as JSON and the script renders it (summary, chart, sortable
/// table, audit trails), writing text only through `textContent`.
const PAGE: &str = include_str!("page.html");
const DATA_MARK: &str = "/*__REPORT_JSON__*/null";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Csv,
    Json,
}

pub fn render(report: &Report, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Csv => csv(report),
        Format::Html => html(report)?,
    })
}

/// JSON for a `<script>` element: nothing in it can close the element or
/// open a comment (`<` and `>` escaped, `&` too), and U+2028/9 are escaped.
fn script_json(report: &Report) -> anyhow::Result<String> {
    Ok(serde_json::to_string(report)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

fn html(report: &Report) -> anyhow::Result<String> {
    anyhow::ensure!(PAGE.contains(DATA_MARK), "the page template lost its data mark");
    Ok(PAGE.replacen(DATA_MARK, &script_json(report)?, 1))
}

/// The CSV's columns, one row per workspace.
pub const CSV_COLUMNS: [&str; 22] = [
    "workspace_id",
    "name",
    "archived",
    "state",
    "compartment_id",
    "workflow_status",
    "external_key_id",
    "key_arn",
    "alias",
    "key_region",
    "attached_since",
    "provisioned_by",
    "execution",
    "validations",
    "last_validation",
    "key_state",
    "rotation_enabled",
    "policy_healthy",
    "policy_findings",
    "guardian_findings_open",
    "guardian_findings_resolved",
    "attention",
];

fn csv(report: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",") + "\r\n";
    for w in &report.workspaces {
        let cells = csv_cells(w);
        out.push_str(&cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cells(w: &WorkspaceRow) -> [String; 22] {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let key = w.key.as_ref();
    let flag = |b: Option<bool>| b.map(|b| b.to_string()).unwrap_or_default();
    [
        w.workspace_id.clone(),
        w.name.clone(),
        w.archived.to_string(),
        w.state.clone(),
        opt(&w.compartment_id),
        opt(&w.workflow_status),
        opt(&w.external_key_id),
        opt(&w.key_arn),
        opt(&w.alias),
        opt(&w.key_region),
        opt(&w.attached_since),
        w.provisioned_by
            .as_ref()
            .and_then(|t| t["source"].as_str())
            .unwrap_or_default()
            .to_owned(),
        opt(&w.execution),
        w.validations.len().to_string(),
        w.validations
            .last()
            .map(|v| format!("{} {} ({})", v.at, v.outcome, v.by))
            .unwrap_or_default(),
        key.and_then(|k| k.state.clone()).unwrap_or_default(),
        flag(key.and_then(|k| k.rotation_enabled)),
        flag(key.map(|k| k.policy_healthy)),
        key.map(|k| {
            k.policy_findings
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default(),
        w.guardian
            .iter()
            .filter(|g| g.resolved == Some(false))
            .count()
            .to_string(),
        w.guardian
            .iter()
            .filter(|g| g.resolved == Some(true))
            .count()
            .to_string(),
        w.attention.join("; "),
    ]
}

/// RFC 4180 quoting, and a leading `'` on text a spreadsheet would run as a
/// formula (`=`, `+`, `-`, `@`, tab, CR): workspace names are anyone's.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::{Inputs, Summary};

    fn report(name: &str) -> Report {
        let mut r = Report {
            generated_at: "2026-11-30T10:00:00Z".into(),
            inputs: Inputs {
                workflow_table: "t".into(),
                aws_region: "us-east-2".into(),
                admin_api: "http://127.0.0.1/".into(),
                organization: "f3f16ee1-adce-41db-aa88-616c144e5b9f".into(),
                kms_regions: vec![],
                geo: "us".into(),
                reads: Default::default(),
            },
            summary: Summary::default(),
            workspaces: vec![WorkspaceRow {
                workspace_id: "wrkspc_01".into(),
                name: name.into(),
                archived: false,
                state: "NOT_ENCRYPTED".into(),
                compartment_id: None,
                workflow_status: None,
                external_key_id: None,
                key_arn: None,
                alias: None,
                key_region: None,
                attached_since: None,
                provisioned_by: None,
                execution: None,
                validations: vec![],
                key: None,
                guardian: vec![],
                last_error: None,
                attention: vec!["not encrypted with a customer-managed key".into()],
                audit_trail: vec![],
            }],
            keys_attached_to_nothing: vec![],
        };
        r.summarize();
        r
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let text = render(&report("=HYPERLINK(\"x\"), prod"), Format::Csv).unwrap();
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next().unwrap().split(',').count(), CSV_COLUMNS.len());
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("wrkspc_01,\"'=HYPERLINK(\"\"x\"\"), prod\",false,NOT_ENCRYPTED,"),
            "{row}"
        );
    }

    #[test]
    fn html_embeds_the_report_where_no_name_can_break_out() {
        let page = render(&report("</script><img src=x onerror=alert(1)>"), Format::Html).unwrap();
        assert!(!page.contains(DATA_MARK));
        assert!(!page.contains("<img src=x"), "the name is inert data");
        assert_eq!(
            page.matches("</script>").count(),
            PAGE.matches("</script>").count()
        );
        let start = page.find("id=\"report-data\"").unwrap();
        let json_start = page[start..].find('>').unwrap() + start + 1;
        let json_end = page[json_start..].find("</script>").unwrap() + json_start;
        let back: serde_json::Value = serde_json::from_str(&page[json_start..json_end]).unwrap();
        assert_eq!(
            back["workspaces"][0]["name"],
            "</script><img src=x onerror=alert(1)>"
        );
    }

    #[test]
    fn the_page_fetches_nothing() {
        for needle in ["src=", "href=", "url(", "@import", "fetch(", "XMLHttpRequest"] {
            assert!(!PAGE.contains(needle), "the page template has {needle}");
        }
        assert!(PAGE.contains("default-src 'none'"), "a CSP forbids any load");
    }
}
