//! `template.yaml` as CloudFormation receives it from `sam deploy`: the AWS
//! SAM translator's output (`tools/sam_translate.py`, in the virtualenv the
//! test command installs for `sam validate`), with the roles, policies,
//! permissions and rules SAM generates. What AWS checks at deploy and run
//! time is checked on this, not on the SAM source.

use sandbox::stack::repo_root;
use serde_json::Value;

pub fn template_text() -> String {
    std::fs::read_to_string(repo_root().join("template.yaml")).expect("reading template.yaml")
}

/// The translation of a template's text (the real one, or a deliberately
/// broken copy for a control).
pub fn translate(template_text: &str) -> Value {
    sandbox::sam::translate(template_text).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The logical id a `Ref` or `Fn::GetAtt` names.
pub fn logical(v: &Value) -> Option<String> {
    v.get("Ref")
        .and_then(Value::as_str)
        .or_else(|| v["Fn::GetAtt"][0].as_str())
        .or_else(|| v["Fn::GetAtt"].as_str().and_then(|s| s.split('.').next()))
        .map(str::to_owned)
}

/// Every value `v` can take: both branches of each `Fn::If` (recursively),
/// `AWS::NoValue` dropped from lists.
pub fn branches(v: &Value) -> Vec<Value> {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("Fn::If") => {
            let args = m["Fn::If"].as_array().cloned().unwrap_or_default();
            args.iter().skip(1).flat_map(branches).collect()
        }
        Value::Object(m) if m.len() == 1 && m.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") => {
            vec![]
        }
        Value::Array(items) => {
            // Each item may itself branch; a list's variants are every item's
            // variants side by side (enough to see every statement once).
            vec![Value::Array(items.iter().flat_map(branches).collect())]
        }
        Value::Object(m) => {
            // Branch the first member that branches; the rest stay as they are
            // and are branched by the recursive call.
            for (k, inner) in m {
                let vs = branches(inner);
                if vs.len() != 1 || vs[0] != *inner {
                    return vs
                        .into_iter()
                        .flat_map(|b| {
                            let mut copy = m.clone();
                            copy.insert(k.clone(), b);
                            branches(&Value::Object(copy))
                        })
                        .collect();
                }
            }
            vec![v.clone()]
        }
        _ => vec![v.clone()],
    }
}

/// Every policy statement anywhere in a translated template (role policies,
/// managed policies, key, topic, queue and bus policies), in every branch of
/// its conditions, with where it was found.
pub fn statements(translated: &Value) -> Vec<(String, Value)> {
    fn walk(path: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) => {
                if let Some(list) = m.get("Statement") {
                    for variant in branches(list) {
                        let items = match variant {
                            Value::Array(items) => items,
                            single => vec![single],
                        };
                        for (i, s) in items.into_iter().enumerate() {
                            for s in branches(&s) {
                                let sid = s["Sid"].as_str().map_or_else(|| i.to_string(), str::to_owned);
                                out.push((format!("{path}/{sid}"), s));
                            }
                        }
                    }
                }
                for (k, inner) in m {
                    if k != "Statement" {
                        walk(&format!("{path}.{k}"), inner, out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), inner, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (id, res) in translated["Resources"].as_object().into_iter().flatten() {
        walk(id, &res["Properties"], &mut out);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup();
    out
}

/// A statement's string list (`Action`, `NotAction`, `Resource`): a string
/// or a list of them; an intrinsic stays as its JSON text.
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        other => vec![other.to_string()],
    }
}
