//! Toolkits: named selections of upstream tools with per-tool overrides (alias, description, fixed
//! arguments, hide), and the rule that turns a profile's toolkits into the tools a request sees.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Selects every tool of a server, or every server, when used as `server` or `tool`.
pub const ALL: &str = "*";

/// One entry of a toolkit.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSelection {
    /// An upstream server's name, or [`ALL`].
    pub server: String,
    /// The upstream's own tool name, or [`ALL`].
    pub tool: String,
    /// The name clients see instead of the default one.
    pub alias: Option<String>,
    pub description: Option<String>,
    /// Injected on every call, over whatever the client sent; removed from the schema clients see.
    pub fixed_arguments: Map<String, Value>,
    /// Listed nowhere and not callable: as if the tool did not exist.
    pub hidden: bool,
}

impl ToolSelection {
    pub fn everything() -> Self {
        Self {
            server: ALL.into(),
            tool: ALL.into(),
            alias: None,
            description: None,
            fixed_arguments: Map::new(),
            hidden: false,
        }
    }

    fn matches(&self, server: &str, tool: &str) -> bool {
        (self.server == ALL || self.server == server) && (self.tool == ALL || self.tool == tool)
    }

    /// How specific the entry is: an entry naming the tool beats one naming only its server.
    fn specificity(&self) -> u8 {
        u8::from(self.server != ALL) + u8::from(self.tool != ALL)
    }
}

/// A tool an upstream offers: which server, the server's own name for it, and the name the hub
/// gives it by default (`{prefix}_{tool}`).
#[derive(Clone, Copy, Debug)]
pub struct OfferedTool<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub default_name: &'a str,
}

/// A tool as a request sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct VisibleTool {
    pub name: String,
    /// The name the hub would give it without overrides.
    pub default_name: String,
    pub server: String,
    pub tool: String,
    pub description: Option<String>,
    pub fixed_arguments: Map<String, Value>,
}

/// The tools a profile's selections make visible, by the name clients see. For each offered tool the
/// most specific matching selection decides (ties: the first listed); a hidden one removes it. When
/// two tools would get the same name, the first offered keeps it.
pub fn visible_tools(selections: &[ToolSelection], offered: &[OfferedTool]) -> BTreeMap<String, VisibleTool> {
    let mut visible = BTreeMap::new();
    for tool in offered {
        let mut best: Option<&ToolSelection> = None;
        for selection in selections.iter().filter(|s| s.matches(tool.server, tool.tool)) {
            if best.is_none_or(|b| selection.specificity() > b.specificity()) {
                best = Some(selection);
            }
        }
        let Some(selection) = best.filter(|s| !s.hidden) else { continue };
        // An alias names one tool; on a wildcard entry it would name many, so it is ignored there.
        let alias = selection.alias.clone().filter(|_| selection.tool != ALL);
        let name = alias.unwrap_or_else(|| tool.default_name.to_owned());
        visible.entry(name.clone()).or_insert_with(|| VisibleTool {
            name,
            default_name: tool.default_name.to_owned(),
            server: tool.server.to_owned(),
            tool: tool.tool.to_owned(),
            description: selection.description.clone(),
            fixed_arguments: selection.fixed_arguments.clone(),
        });
    }
    visible
}

/// Whether a profile's selections use anything of `server`: its prompts and resources are offered
/// only then, together with its tools.
pub fn server_selected(selections: &[ToolSelection], server: &str) -> bool {
    selections.iter().any(|s| !s.hidden && (s.server == ALL || s.server == server))
}

/// The input schema clients see: fixed arguments are neither shown nor required.
pub fn schema_without_fixed(schema: &Map<String, Value>, fixed: &Map<String, Value>) -> Map<String, Value> {
    let mut schema = schema.clone();
    if fixed.is_empty() {
        return schema;
    }
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.retain(|name, _| !fixed.contains_key(name));
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|name| name.as_str().is_none_or(|n| !fixed.contains_key(n)));
    }
    schema
}

/// The arguments sent upstream: the client's, with every fixed argument set over them.
pub fn arguments_with_fixed(
    client: Option<Map<String, Value>>,
    fixed: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    if fixed.is_empty() {
        return client;
    }
    let mut arguments = client.unwrap_or_default();
    for (name, value) in fixed {
        arguments.insert(name.clone(), value.clone());
    }
    Some(arguments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn select(server: &str, tool: &str) -> ToolSelection {
        ToolSelection { server: server.into(), tool: tool.into(), ..ToolSelection::everything() }
    }

    fn offered() -> Vec<OfferedTool<'static>> {
        vec![
            OfferedTool { server: "github", tool: "create_issue", default_name: "github_create_issue" },
            OfferedTool { server: "github", tool: "delete_repo", default_name: "github_delete_repo" },
            OfferedTool { server: "slack", tool: "post", default_name: "slack_post" },
        ]
    }

    fn names(selections: &[ToolSelection]) -> Vec<String> {
        visible_tools(selections, &offered()).into_keys().collect()
    }

    #[test]
    fn selections_decide_what_is_visible() {
        let hidden = ToolSelection { hidden: true, ..select("github", "delete_repo") };
        let aliased = ToolSelection { alias: Some("file_bug".into()), ..select("github", "create_issue") };
        let cases: Vec<(&str, Vec<ToolSelection>, Vec<&str>)> = vec![
            ("nothing selected, nothing visible", vec![], vec![]),
            (
                "everything",
                vec![ToolSelection::everything()],
                vec!["github_create_issue", "github_delete_repo", "slack_post"],
            ),
            ("one server", vec![select("github", ALL)], vec!["github_create_issue", "github_delete_repo"]),
            ("one tool", vec![select("slack", "post")], vec!["slack_post"]),
            (
                "a hidden tool beats its server's wildcard",
                vec![select("github", ALL), hidden.clone()],
                vec!["github_create_issue"],
            ),
            ("order does not matter for specificity", vec![hidden, select("github", ALL)], vec!["github_create_issue"]),
            ("an alias renames", vec![aliased], vec!["file_bug"]),
            (
                "an alias on a wildcard is ignored",
                vec![ToolSelection { alias: Some("x".into()), ..select("slack", ALL) }],
                vec!["slack_post"],
            ),
            ("unknown servers and tools select nothing", vec![select("jira", ALL), select("github", "nope")], vec![]),
        ];
        for (case, selections, expected) in cases {
            assert_eq!(names(&selections), expected, "{case}");
        }
    }

    #[test]
    fn servers_are_selected_by_name_or_wildcard_and_not_by_hidden_entries() {
        let hidden = ToolSelection { hidden: true, ..select("slack", "post") };
        assert!(server_selected(&[select("github", "create_issue")], "github"));
        assert!(server_selected(&[ToolSelection::everything()], "anything"));
        assert!(!server_selected(&[select("github", ALL)], "slack"));
        assert!(!server_selected(&[hidden], "slack"), "hiding a tool selects nothing");
        assert!(!server_selected(&[], "github"));
    }

    #[test]
    fn colliding_names_keep_the_first_tool() {
        let clash = ToolSelection { alias: Some("slack_post".into()), ..select("github", "create_issue") };
        let visible = visible_tools(&[clash, select("slack", "post")], &offered());
        assert_eq!(visible["slack_post"].server, "github");
        assert_eq!(visible.len(), 1);
    }

    #[test]
    fn fixed_arguments_are_hidden_from_the_schema_and_win_on_call() {
        let fixed = json!({"repo": "acme/site"}).as_object().cloned().unwrap();
        let schema = json!({"type": "object", "properties": {"repo": {"type": "string"}, "title": {"type": "string"}},
                            "required": ["repo", "title"]});
        let shown = schema_without_fixed(schema.as_object().unwrap(), &fixed);
        assert_eq!(
            Value::Object(shown),
            json!({"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]})
        );

        let sent = json!({"title": "bug", "repo": "evil/other"}).as_object().cloned();
        let merged = arguments_with_fixed(sent, &fixed).unwrap();
        assert_eq!(Value::Object(merged), json!({"title": "bug", "repo": "acme/site"}), "the client cannot override");
        assert_eq!(arguments_with_fixed(None, &fixed).unwrap()["repo"], "acme/site");
        assert_eq!(arguments_with_fixed(None, &Map::new()), None);
    }
}
