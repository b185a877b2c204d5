//! JSON ↔ DynamoDB attribute values, so records are (de)serialized by serde
//! once instead of field by field.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

pub type Item = HashMap<String, AttributeValue>;

pub fn to_item(value: &Value) -> Item {
    match value {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), to_attr(v)))
            .collect(),
        _ => Item::new(),
    }
}

fn to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attr).collect()),
        Value::Object(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()),
    }
}

pub fn from_item(item: &Item) -> Result<Value, String> {
    let mut map = Map::new();
    for (k, v) in item {
        map.insert(k.clone(), from_attr(v)?);
    }
    Ok(Value::Object(map))
}

fn from_attr(attr: &AttributeValue) -> Result<Value, String> {
    Ok(match attr {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => {
            if let Ok(i) = n.parse::<i64>() {
                Value::Number(i.into())
            } else if let Ok(u) = n.parse::<u64>() {
                Value::Number(u.into())
            } else {
                let f: f64 = n.parse().map_err(|_| format!("bad number {n:?}"))?;
                Value::Number(Number::from_f64(f).ok_or_else(|| format!("bad number {n:?}"))?)
            }
        }
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attr).collect::<Result<_, _>>()?),
        AttributeValue::M(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), from_attr(v)?);
            }
            Value::Object(out)
        }
        other => return Err(format!("unsupported attribute type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = serde_json::json!({"s": "x", "n": 5, "neg": -3, "f": 1.5, "b": true, "l": [1, "a", {"m": false}], "m": {"k": "v"}});
        assert_eq!(from_item(&to_item(&v)).unwrap(), v);
    }

    #[test]
    fn nulls_are_dropped_at_top_level() {
        let v = serde_json::json!({"a": null, "b": 1});
        assert_eq!(to_item(&v).len(), 1);
    }
}
