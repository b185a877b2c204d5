//! Reads `template.yaml` so the local stack is built from the same
//! definitions that deploy to AWS: the functions (binary, environment), the
//! table's key schema and the state machine's definition and substitutions.
//! Only the intrinsic functions the template uses are resolved (`Ref`,
//! `GetAtt`, `Sub`, `If`, `Not`, `Equals`, `Or`, `And`), in short and long form.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_yaml_ng::Value;

#[derive(Debug, Clone)]
pub struct Template {
    doc: Value,
    dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TemplateFunction {
    pub logical_id: String,
    pub binary: String,
    /// What Lambda hands the binary as `_HANDLER`: which function it serves.
    pub handler: String,
    pub env: BTreeMap<String, String>,
    pub timeout_secs: u64,
}

/// What `Ref`/`GetAtt` resolve to locally.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Bindings {
    pub parameters: HashMap<String, String>,
    /// `Ref` of a resource, by logical id.
    pub refs: HashMap<String, String>,
    /// `GetAtt`, by `LogicalId.Attribute`.
    pub attrs: HashMap<String, String>,
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("parsing {}", path.display()))
    }

    /// A template's text, its relative paths (`DefinitionUri`) read from `dir`.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let doc: Value = serde_yaml_ng::from_str(text)?;
        Ok(Self {
            doc,
            dir: dir.to_path_buf(),
        })
    }

    /// The whole document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    fn section(&self, name: &str) -> Option<&serde_yaml_ng::Mapping> {
        self.doc.get(name).and_then(Value::as_mapping)
    }

    /// Every parameter's default ("" when it has none).
    pub fn parameter_defaults(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if let Some(params) = self.section("Parameters") {
            for (k, v) in params {
                let name = k.as_str().unwrap_or_default().to_owned();
                let default = v.get("Default").map(scalar).unwrap_or_default();
                out.insert(name, default);
            }
        }
        out
    }

    pub fn resources_of_type(&self, kind: &str) -> Vec<(String, &Value)> {
        self.section("Resources")
            .map(|r| {
                r.iter()
                    .filter(|(_, v)| v.get("Type").and_then(Value::as_str) == Some(kind))
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn functions(&self, b: &Bindings) -> anyhow::Result<Vec<TemplateFunction>> {
        let globals = self.doc.get("Globals").and_then(|g| g.get("Function"));
        let global_env = globals
            .and_then(|g| g.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let global_timeout = globals
            .and_then(|g| g.get("Timeout"))
            .and_then(Value::as_u64)
            .unwrap_or(3);
        let mut out = Vec::new();
        for (id, res) in self.resources_of_type("AWS::Serverless::Function") {
            let binary = res
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|p| p.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("{id}: Metadata.BuildProperties.Binary is required"))?
                .to_owned();
            let handler = res
                .get("Properties")
                .and_then(|p| p.get("Handler"))
                .or_else(|| globals.and_then(|g| g.get("Handler")))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    anyhow!("{id}: Handler is required (it names the function the binary serves)")
                })?
                .to_owned();
            let mut env = BTreeMap::new();
            let own = res
                .get("Properties")
                .and_then(|p| p.get("Environment"))
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default();
            for (k, v) in global_env.iter().chain(own.iter()) {
                let key = k.as_str().unwrap_or_default().to_owned();
                env.insert(
                    key.clone(),
                    resolve(v, b, &self.conditions()).with_context(|| format!("{id}: env {key}"))?,
                );
            }
            let timeout_secs = res
                .get("Properties")
                .and_then(|p| p.get("Timeout"))
                .and_then(Value::as_u64)
                .unwrap_or(global_timeout);
            out.push(TemplateFunction {
                logical_id: id,
                binary,
                handler,
                env,
                timeout_secs,
            });
        }
        Ok(out)
    }

    fn conditions(&self) -> HashMap<String, Value> {
        self.section("Conditions")
            .map(|c| {
                c.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The state machine's definition with its substitutions applied.
    pub fn state_machine_definition(&self, logical_id: &str, b: &Bindings) -> anyhow::Result<String> {
        let res = self
            .section("Resources")
            .and_then(|r| r.get(logical_id))
            .ok_or_else(|| anyhow!("no resource {logical_id} in the template"))?;
        let props = res
            .get("Properties")
            .ok_or_else(|| anyhow!("{logical_id} has no Properties"))?;
        let uri = props
            .get("DefinitionUri")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{logical_id}: DefinitionUri"))?;
        let mut text =
            std::fs::read_to_string(self.dir.join(uri)).with_context(|| format!("reading {uri}"))?;
        if let Some(subs) = props.get("DefinitionSubstitutions").and_then(Value::as_mapping) {
            for (k, v) in subs {
                let name = k.as_str().unwrap_or_default();
                let value =
                    resolve(v, b, &self.conditions()).with_context(|| format!("substitution {name}"))?;
                text = text.replace(&format!("${{{name}}}"), &value);
            }
        }
        if let Some(start) = text.find("${") {
            let rest: String = text[start..].chars().take(40).collect();
            bail!("unsubstituted placeholder in the definition: {rest}");
        }
        serde_json::from_str::<serde_json::Value>(&text)
            .context("the substituted definition is not valid JSON")?;
        Ok(text)
    }

    /// The EventBridge rules SAM creates from functions' `EventBridgeRule`
    /// events: (function logical id, bus name, pattern as JSON).
    pub fn bus_rules(&self, b: &Bindings) -> anyhow::Result<Vec<(String, String, serde_json::Value)>> {
        let mut out = Vec::new();
        for (id, res) in self.resources_of_type("AWS::Serverless::Function") {
            let Some(events) = res
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping)
            else {
                continue;
            };
            for (_, ev) in events {
                if ev.get("Type").and_then(Value::as_str) != Some("EventBridgeRule") {
                    continue;
                }
                let props = ev
                    .get("Properties")
                    .ok_or_else(|| anyhow!("{id}: EventBridgeRule without Properties"))?;
                // A disabled rule delivers nothing.
                if let Some(state) = props.get("State")
                    && resolve(state, b, &self.conditions())? == "DISABLED"
                {
                    continue;
                }
                let bus = match props.get("EventBusName") {
                    Some(v) => resolve(v, b, &self.conditions())?,
                    None => "default".to_owned(),
                };
                let pattern: serde_json::Value = serde_json::to_value(
                    props
                        .get("Pattern")
                        .ok_or_else(|| anyhow!("{id}: rule without Pattern"))?,
                )?;
                out.push((id.clone(), bus, pattern));
            }
        }
        Ok(out)
    }

    /// `Properties` of a resource, for the few the local stack creates by hand.
    pub fn properties(&self, logical_id: &str) -> Option<&Value> {
        self.section("Resources")
            .and_then(|r| r.get(logical_id))
            .and_then(|r| r.get("Properties"))
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_owned(), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".into(), inner))
            } else {
                k.strip_prefix("Fn::").map(|name| (name.to_owned(), inner))
            }
        }
        _ => None,
    }
}

/// Resolve an intrinsic (or a plain scalar) to its local string value.
pub fn resolve(v: &Value, b: &Bindings, conditions: &HashMap<String, Value>) -> anyhow::Result<String> {
    if let Some((name, arg)) = tagged(v) {
        return match name.as_str() {
            "Ref" => {
                let id = arg.as_str().ok_or_else(|| anyhow!("Ref needs a name"))?;
                b.parameters
                    .get(id)
                    .or_else(|| b.refs.get(id))
                    .cloned()
                    .ok_or_else(|| anyhow!("no local value for Ref {id}"))
            }
            "GetAtt" => {
                let key = match arg {
                    Value::String(s) => s.clone(),
                    Value::Sequence(parts) => parts.iter().map(scalar).collect::<Vec<_>>().join("."),
                    _ => bail!("GetAtt needs Resource.Attribute"),
                };
                b.attrs
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| anyhow!("no local value for GetAtt {key}"))
            }
            "Sub" => {
                let mut text = arg
                    .as_str()
                    .ok_or_else(|| anyhow!("only the string form of Sub is supported"))?
                    .to_owned();
                while let Some(start) = text.find("${") {
                    let end = text[start..]
                        .find('}')
                        .ok_or_else(|| anyhow!("unclosed ${{ in Sub"))?
                        + start;
                    let name = &text[start + 2..end];
                    let value = if let Some((res, attr)) = name.split_once('.') {
                        b.attrs.get(&format!("{res}.{attr}")).cloned()
                    } else {
                        b.parameters.get(name).or_else(|| b.refs.get(name)).cloned()
                    }
                    .ok_or_else(|| anyhow!("no local value for ${{{name}}} in Sub"))?;
                    text.replace_range(start..=end, &value);
                }
                Ok(text)
            }
            "If" => {
                let parts = arg
                    .as_sequence()
                    .ok_or_else(|| anyhow!("If needs [condition, then, else]"))?;
                let [cond, then, otherwise] = parts.as_slice() else {
                    bail!("If needs three items")
                };
                let cond = cond
                    .as_str()
                    .ok_or_else(|| anyhow!("If condition must be a name"))?;
                let expr = conditions
                    .get(cond)
                    .ok_or_else(|| anyhow!("unknown condition {cond}"))?;
                if truth(expr, b, conditions)? {
                    resolve(then, b, conditions)
                } else {
                    resolve(otherwise, b, conditions)
                }
            }
            other => bail!("intrinsic {other} is not supported locally"),
        };
    }
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(scalar(v)),
        _ => bail!("cannot resolve {v:?} to a string"),
    }
}

fn truth(v: &Value, b: &Bindings, conditions: &HashMap<String, Value>) -> anyhow::Result<bool> {
    let (name, arg) = tagged(v).ok_or_else(|| anyhow!("condition must be an intrinsic"))?;
    match name.as_str() {
        "Not" => {
            let inner = arg
                .as_sequence()
                .and_then(|s| s.first())
                .ok_or_else(|| anyhow!("Not needs [x]"))?;
            Ok(!truth(inner, b, conditions)?)
        }
        "Equals" => {
            let parts = arg.as_sequence().ok_or_else(|| anyhow!("Equals needs [a, b]"))?;
            let [x, y] = parts.as_slice() else {
                bail!("Equals needs two items")
            };
            Ok(resolve(x, b, conditions)? == resolve(y, b, conditions)?)
        }
        "Or" | "And" => {
            let parts = arg
                .as_sequence()
                .ok_or_else(|| anyhow!("{name} needs a list"))?
                .iter()
                .map(|p| truth(p, b, conditions))
                .collect::<anyhow::Result<Vec<bool>>>()?;
            Ok(if name == "Or" {
                parts.iter().any(|x| *x)
            } else {
                parts.iter().all(|x| *x)
            })
        }
        "Condition" => {
            let c = arg.as_str().ok_or_else(|| anyhow!("Condition needs a name"))?;
            truth(
                conditions
                    .get(c)
                    .ok_or_else(|| anyhow!("unknown condition {c}"))?,
                b,
                conditions,
            )
        }
        other => bail!("condition function {other} is not supported locally"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn discovered_rules(params: &[(&str, &str)]) -> usize {
        let t = Template::load(&crate::stack::repo_root().join("template.yaml")).unwrap();
        let mut b = Bindings {
            parameters: t.parameter_defaults(),
            ..Bindings::default()
        };
        b.refs.insert("ResultBus".into(), "bus".into());
        for (k, v) in params {
            b.parameters.insert((*k).into(), (*v).into());
        }
        t.bus_rules(&b)
            .unwrap()
            .iter()
            .filter(|(f, _, _)| f == "StartFromEventFunction")
            .count()
    }

    /// A rule the template deploys DISABLED delivers nothing locally either:
    /// with auto-provisioning off and no trusted publisher (the defaults), no
    /// "Workspace Discovered" event starts a provisioning.
    #[test]
    fn a_disabled_rule_delivers_nothing() {
        assert_eq!(discovered_rules(&[]), 0);
        assert_eq!(discovered_rules(&[("AutoProvision", "true")]), 1);
        assert_eq!(
            discovered_rules(&[("TrustedEventPublishers", crate::stack::LOCAL_TOOLING_ROLE)]),
            1
        );
    }
}
