//! `[dashboard]` and its `[[dashboard.panel]]` entries.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Id of the built-in panel showing the pipeline itself.
pub const PIPELINE_PANEL: &str = "pipeline";

/// `[dashboard]`: the live dashboard `apiary run` and `apiary dashboard`
/// serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DashboardSection {
    /// Address to listen on; loopback unless configured otherwise.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A bearer token the page and the API require (`${VAR}` expands).
    pub token: Option<String>,
    /// The page's heading.
    #[serde(default = "default_title")]
    pub title: String,
    /// Time one panel query may take.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// The panels, in page order (the built-in pipeline panel comes last).
    #[serde(default, rename = "panel")]
    pub panels: Vec<Panel>,
}

/// `[[dashboard.panel]]`: a read-only SQL query over the sink and how to
/// draw its result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Panel {
    /// Names the panel in the API (`/api/panels/<id>`).
    pub id: String,
    /// The panel's heading.
    pub title: String,
    /// SQL over the sink; its first 1000 rows are shown.
    pub query: String,
    /// How the rows are drawn.
    pub chart: ChartKind,
    /// Column of the categories or times (default: the first).
    pub x: Option<String>,
    /// Value columns (default: every column after `x`, or after `x` and
    /// `series`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub y: Vec<String>,
    /// Column of the second key: one bar per value in a grouped bar, the
    /// rows of a heat map.
    pub series: Option<String>,
    /// Unit shown after the figures.
    pub unit: Option<String>,
    /// Also show the sum of the first value column as a headline figure.
    #[serde(default)]
    pub total: bool,
    /// Grid columns the panel spans, 1 to 4.
    #[serde(default = "default_span")]
    pub span: u8,
}

/// How a panel draws its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChartKind {
    /// The first row's value columns as big figures.
    Number,
    /// One bar per row.
    Bar,
    /// A line over `x` (times or categories).
    Line,
    /// A filled line over `x`.
    Area,
    /// One slice per row.
    Pie,
    /// The rows as they are.
    Table,
    /// Bars per `x`, one per `series` value.
    GroupedBar,
    /// `x` × `series` cells coloured by the value.
    Heatmap,
    /// The built-in pipeline panel.
    Pipeline,
}

fn default_listen() -> String {
    "127.0.0.1:9465".into()
}
fn default_title() -> String {
    "Apiary".into()
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_span() -> u8 {
    1
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl DashboardSection {
    /// Checks what can be checked before a query runs; errors name the key.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "dashboard.listen".into(),
                format!("`{}` is not an address like 127.0.0.1:9465", self.listen),
            ));
        }
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid(
                "dashboard.token".into(),
                "is empty; remove it for no token".into(),
            ));
        }
        if self.query_timeout.is_zero() {
            return Err(invalid(
                "dashboard.query-timeout".into(),
                "must be more than 0s".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, panel) in self.panels.iter().enumerate() {
            let key = |field: &str| format!("dashboard.panel[{i}].{field}");
            let id = &panel.id;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    key("id"),
                    format!("`{id}` must be letters, digits, `-` or `_`"),
                ));
            }
            if id == PIPELINE_PANEL {
                return Err(invalid(
                    key("id"),
                    "`pipeline` is the built-in pipeline panel's id".into(),
                ));
            }
            if !seen.insert(id.as_str()) {
                return Err(invalid(key("id"), format!("`{id}` is used twice")));
            }
            if panel.query.trim().is_empty() {
                return Err(invalid(key("query"), "must not be empty".into()));
            }
            if panel.chart == ChartKind::Pipeline {
                return Err(invalid(
                    key("chart"),
                    "`pipeline` is the built-in panel's kind".into(),
                ));
            }
            let two_keys = matches!(panel.chart, ChartKind::GroupedBar | ChartKind::Heatmap);
            if two_keys && panel.series.is_none() {
                return Err(invalid(
                    key("series"),
                    format!(
                        "is needed by a {} chart: the column of the second key",
                        serde_json::to_value(panel.chart)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ),
                ));
            }
            if !(1..=4).contains(&panel.span) {
                return Err(invalid(key("span"), "must be 1 to 4".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DashboardSection, ConfigError> {
        let section: DashboardSection = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "p.toml".into(),
            message: e.to_string(),
        })?;
        section.validate(Path::new("p.toml"))?;
        Ok(section)
    }

    #[test]
    fn panels_with_defaults() {
        let d = parse(
            r#"
            [[panel]]
            id = "totals"
            title = "Totals"
            query = "SELECT 1"
            chart = "grouped-bar"
            series = "grade"
            y = "members"
            "#,
        )
        .unwrap();
        assert_eq!(d.listen, "127.0.0.1:9465");
        assert_eq!(d.panels[0].chart, ChartKind::GroupedBar);
        assert_eq!(d.panels[0].y, ["members"]);
        assert_eq!(d.panels[0].span, 1);
    }

    #[test]
    fn bad_panels_name_the_key() {
        let base = "[[panel]]\nid = \"a\"\ntitle = \"A\"\nquery = \"SELECT 1\"\nchart = \"bar\"\n";
        let err = |text: String| parse(&text).unwrap_err().to_string();
        assert!(err(base.replace("bar", "donut")).contains("donut"));
        assert!(err(format!("{base}{base}")).contains("dashboard.panel[1].id"));
        assert!(err(base.replace("\"a\"", "\"pipeline\"")).contains("dashboard.panel[0].id"));
        assert!(err(base.replace("\"bar\"", "\"heatmap\"")).contains("dashboard.panel[0].series"));
        assert!(err(format!("listen = \"nowhere\"\n{base}")).contains("dashboard.listen"));
        assert!(err(format!("{base}colour = \"red\"\n")).contains("colour"));
    }
}
