//! The state machine as a Mermaid flowchart, generated from its definition
//! (`cmek-local render-diagram`). `docs/state-machine.md` holds the output;
//! a test regenerates it from `statemachine/provision.asl.json` and fails
//! when the two differ, so the picture never drifts from what deploys.
//!
//! What is drawn: every state (a task as a box naming its retry rules, a
//! choice as a diamond, a Fail as a double box, the end as a stadium), every
//! `Next`, every choice rule and `Default`, every `Catch` (dotted, labelled
//! with the errors it catches).

use anyhow::{Context, bail};
use serde_json::Value;

/// A Mermaid node id for a state name (letters, digits and `_` only).
fn node_id(state: &str) -> String {
    state
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A label Mermaid takes inside double quotes.
fn label(text: &str) -> String {
    text.replace('"', "#quot;")
}

/// A choice rule in a few words: `$.a.b == true`, `$.x is not null`,
/// `… and …`; the rule's number when it uses an operator not spelled here.
fn rule_label(rule: &Value, n: usize) -> String {
    for (op, joint) in [("And", " and "), ("Or", " or ")] {
        if let Some(rules) = rule.get(op).and_then(Value::as_array) {
            let parts: Vec<String> = rules.iter().map(|r| rule_label(r, n)).collect();
            return parts.join(joint);
        }
    }
    let Some(var) = rule.get("Variable").and_then(Value::as_str) else {
        return format!("rule {n}");
    };
    let value = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    for op in ["BooleanEquals", "StringEquals", "NumericEquals"] {
        if let Some(v) = rule.get(op) {
            return format!("{var} == {}", value(v));
        }
    }
    match (rule.get("IsNull"), rule.get("IsPresent")) {
        (Some(Value::Bool(true)), _) => format!("{var} is null"),
        (Some(Value::Bool(false)), _) => format!("{var} is not null"),
        (_, Some(Value::Bool(true))) => format!("{var} is present"),
        (_, Some(Value::Bool(false))) => format!("{var} is absent"),
        _ => format!("rule {n} on {var}"),
    }
}

/// The flowchart for a state machine definition (as deployed: template
/// values substituted).
pub fn mermaid(definition: &Value) -> anyhow::Result<String> {
    let states = definition["States"]
        .as_object()
        .context("the definition has no States")?;
    let start = definition["StartAt"]
        .as_str()
        .context("the definition has no StartAt")?;
    let mut nodes = Vec::new();
    let mut edges = vec![format!("    start((start)) --> {}", node_id(start))];
    for (name, state) in states {
        let id = node_id(name);
        let kind = state["Type"].as_str().unwrap_or_default();
        let retries = state["Retry"].as_array().map_or(0, Vec::len);
        let shape = match kind {
            "Task" => format!(
                "{id}[\"{}<br/>Lambda task, {retries} retry rule{}\"]",
                label(name),
                if retries == 1 { "" } else { "s" }
            ),
            "Choice" => format!("{id}{{\"{}\"}}", label(name)),
            "Fail" => format!("{id}[[\"{} (fails the execution)\"]]", label(name)),
            "Succeed" => format!("{id}([\"{}\"])", label(name)),
            "Pass" if state["End"] == true => format!("{id}([\"{} (end)\"])", label(name)),
            "Pass" => format!("{id}[/\"{}\"/]", label(name)),
            other => bail!("state {name}: type {other:?} is not drawn yet"),
        };
        nodes.push(format!("    {shape}"));
        let to = |next: &Value| -> anyhow::Result<String> {
            let next = next.as_str().context("a transition without a state name")?;
            if !states.contains_key(next) {
                bail!("state {name} goes to {next}, which does not exist");
            }
            Ok(node_id(next))
        };
        if let Some(next) = state.get("Next") {
            edges.push(format!("    {id} --> {}", to(next)?));
        }
        for (n, rule) in state["Choices"].as_array().into_iter().flatten().enumerate() {
            edges.push(format!(
                "    {id} -- \"{}\" --> {}",
                label(&rule_label(rule, n + 1)),
                to(&rule["Next"])?
            ));
        }
        if let Some(default) = state.get("Default") {
            edges.push(format!("    {id} -- \"otherwise\" --> {}", to(default)?));
        }
        for catch in state["Catch"].as_array().into_iter().flatten() {
            let errors: Vec<&str> = catch["ErrorEquals"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let errors = if errors == ["States.ALL"] {
                "any error".to_owned()
            } else {
                errors.join(", ")
            };
            edges.push(format!(
                "    {id} -. \"{}\" .-> {}",
                label(&errors),
                to(&catch["Next"])?
            ));
        }
    }
    Ok(format!(
        "flowchart TD\n{}\n{}\n",
        nodes.join("\n"),
        edges.join("\n")
    ))
}

/// The state machine's definition as deployed with the template's
/// defaults (the functions' ARNs made up), as text.
pub fn deployed_definition_text() -> anyhow::Result<String> {
    use crate::template::{Bindings, Template};
    let template = Template::load(&crate::stack::repo_root().join("template.yaml"))?;
    let mut b = Bindings {
        parameters: template.parameter_defaults(),
        ..Bindings::default()
    };
    for (id, _) in template.resources_of_type("AWS::Serverless::Function") {
        b.attrs.insert(
            format!("{id}.Arn"),
            format!("arn:aws:lambda:us-east-2:123456789012:function:{id}"),
        );
    }
    template.state_machine_definition(crate::stack::STATE_MACHINE, &b)
}

/// The same, parsed.
pub fn deployed_definition() -> anyhow::Result<Value> {
    serde_json::from_str(&deployed_definition_text()?).context("the rendered definition is not JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_state_and_transition_is_drawn() {
        let asl = json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Retry": [{}], "Next": "Is it?",
                      "Catch": [{"ErrorEquals": ["Boom", "Bang"], "Next": "Bad"}]},
                "Is it?": {"Type": "Choice", "Choices": [
                    {"Variable": "$.x", "BooleanEquals": true, "Next": "Done"},
                    {"And": [{"Variable": "$.e", "IsNull": false}, {"Variable": "$.s", "StringEquals": "OK"}], "Next": "Done"}
                ], "Default": "Bad"},
                "Done": {"Type": "Pass", "End": true},
                "Bad": {"Type": "Fail"}
            }
        });
        let m = mermaid(&asl).unwrap();
        for line in [
            "start((start)) --> A",
            "A[\"A<br/>Lambda task, 1 retry rule\"]",
            "Is_it_{\"Is it?\"}",
            "Done([\"Done (end)\"])",
            "Bad[[\"Bad (fails the execution)\"]]",
            "A --> Is_it_",
            "A -. \"Boom, Bang\" .-> Bad",
            "Is_it_ -- \"$.x == true\" --> Done",
            "Is_it_ -- \"$.e is not null and $.s == OK\" --> Done",
            "Is_it_ -- \"otherwise\" --> Bad",
        ] {
            assert!(m.contains(line), "missing {line:?} in\n{m}");
        }
    }

    #[test]
    fn a_transition_to_nowhere_is_an_error() {
        let asl = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}});
        assert!(
            mermaid(&asl)
                .unwrap_err()
                .to_string()
                .contains("B, which does not exist")
        );
    }
}
