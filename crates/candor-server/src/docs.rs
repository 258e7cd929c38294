//! `/docs`: the API reference as a page, rendered on the server from the same generated
//! OpenAPI document `/openapi.json` serves (`crate::openapi`).
//!
//! Rendered here rather than by a JavaScript viewer (Swagger UI, Redoc): such viewers
//! inject inline styles the pages' CSP forbids, weigh hundreds of kilobytes and need a
//! script to show anything. This page needs nothing but Candor: one HTML response, its
//! nonce'd style, links within the page, and works without JavaScript.

use serde::Serialize;
use serde_json::Value;

/// Everything the template shows.
#[derive(Serialize)]
pub struct View {
    pub title: String,
    pub intro: Vec<String>,
    pub schemes: Vec<Scheme>,
    pub tags: Vec<Tag>,
    pub errors: Vec<ErrorRow>,
    pub schemas: Vec<SchemaView>,
    pub operations: usize,
}

#[derive(Serialize)]
pub struct Scheme {
    pub name: String,
    pub kind: String,
    pub description: String,
}

#[derive(Serialize)]
pub struct Tag {
    pub name: String,
    pub anchor: String,
    pub description: String,
    pub operations: Vec<Operation>,
}

#[derive(Serialize)]
pub struct Operation {
    pub id: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: Vec<String>,
    pub credentials: Vec<String>,
    pub parameters: Vec<Field>,
    pub body: Vec<Media>,
    pub responses: Vec<ResponseView>,
}

#[derive(Serialize)]
pub struct Media {
    pub media_type: String,
    pub schema: String,
    pub schema_link: Option<String>,
    pub example: Option<String>,
}

#[derive(Serialize)]
pub struct ResponseView {
    pub status: String,
    pub description: String,
    pub media: Vec<Media>,
    pub codes: Vec<String>,
}

#[derive(Serialize)]
pub struct Field {
    pub name: String,
    pub location: String,
    pub kind: String,
    pub link: Option<String>,
    pub required: bool,
    pub description: String,
}

#[derive(Serialize)]
pub struct ErrorRow {
    pub code: String,
    pub status: u16,
    pub kind: String,
}

#[derive(Serialize)]
pub struct SchemaView {
    pub name: String,
    pub anchor: String,
    pub kind: String,
    pub description: String,
    /// The schemas this one extends (`allOf`): their fields come first.
    pub bases: Vec<String>,
    pub fields: Vec<Field>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn paragraphs(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or_default()
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn schema_anchor(name: &str) -> String {
    format!("schema-{name}")
}

/// The component a `$ref` names.
fn ref_name(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

/// A short description of a schema's type, and the component to link to, if any.
fn describe(schema: &Value) -> (String, Option<String>) {
    if let Some(name) = ref_name(schema) {
        return (name.to_owned(), Some(schema_anchor(name)));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema[combinator].as_array() {
            // `Option<T>` of a component is `oneOf: [null, T]`: say "T or null".
            let is_null = |s: &&Value| s["type"] == "null";
            let nullable = list.iter().any(|s| is_null(&s));
            let parts: Vec<(String, Option<String>)> =
                list.iter().filter(|s| !is_null(s)).map(describe).collect();
            let link = parts.iter().find_map(|(_, l)| l.clone());
            let names: Vec<String> = parts.into_iter().map(|(n, _)| n).collect();
            let joiner = if combinator == "allOf" {
                " and "
            } else {
                " | "
            };
            let mut label = names.join(joiner);
            if nullable {
                label.push_str(" or null");
            }
            return (label, link);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        return (format!("one of: {}", names.join(", ")), None);
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().map(text).collect(),
        _ => vec![],
    };
    let nullable = types.iter().any(|t| t == "null");
    let base = types.iter().find(|t| *t != "null").cloned();
    let (mut label, link) = match base.as_deref() {
        Some("array") => {
            let (item, link) = describe(&schema["items"]);
            (format!("array of {item}"), link)
        }
        Some("object") if schema["additionalProperties"].is_object() => {
            let (value, link) = describe(&schema["additionalProperties"]);
            (format!("map of {value}"), link)
        }
        Some(t) => {
            let format = schema["format"].as_str().map(|f| format!(" ({f})"));
            (format!("{t}{}", format.unwrap_or_default()), None)
        }
        None if schema.as_object().is_some_and(|o| o.is_empty()) => ("any".to_owned(), None),
        None => ("object".to_owned(), None),
    };
    if nullable {
        label.push_str(" or null");
    }
    (label, link)
}

/// The properties of an object schema, as rows.
fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return vec![];
    };
    props
        .iter()
        .map(|(name, p)| {
            let (kind, link) = describe(p);
            Field {
                name: name.clone(),
                location: String::new(),
                kind,
                link,
                required: required.contains(&name.as_str()),
                description: text(&p["description"]),
            }
        })
        .collect()
}

fn media(content: &Value) -> Vec<Media> {
    let Some(content) = content.as_object() else {
        return vec![];
    };
    content
        .iter()
        .map(|(media_type, c)| {
            let (schema, schema_link) = if c["schema"].is_null() {
                (String::new(), None)
            } else {
                describe(&c["schema"])
            };
            let example = c
                .get("example")
                .or_else(|| c["schema"].get("example"))
                .and_then(|e| serde_json::to_string_pretty(e).ok());
            Media {
                media_type: media_type.clone(),
                schema,
                schema_link,
                example,
            }
        })
        .collect()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The page's view of the document.
pub fn view(doc: &Value) -> View {
    let mut tags: Vec<Tag> = doc["tags"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| Tag {
                    name: text(&t["name"]),
                    anchor: format!("tag-{}", text(&t["name"]).replace(' ', "-")),
                    description: text(&t["description"]),
                    operations: vec![],
                })
                .collect()
        })
        .unwrap_or_default();
    let mut count = 0;
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                let op = &item[method];
                if op.is_null() {
                    continue;
                }
                count += 1;
                let tag = op["tags"][0].as_str().unwrap_or("meta").to_owned();
                let operation = operation(method, path, op);
                match tags.iter_mut().find(|t| t.name == tag) {
                    Some(t) => t.operations.push(operation),
                    None => tags.push(Tag {
                        anchor: format!("tag-{}", tag.replace(' ', "-")),
                        name: tag,
                        description: String::new(),
                        operations: vec![operation],
                    }),
                }
            }
        }
    }
    tags.retain(|t| !t.operations.is_empty());
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(name, s)| Scheme {
                    name: name.clone(),
                    kind: match (s["type"].as_str(), s["scheme"].as_str()) {
                        (Some("http"), Some(scheme)) => format!("HTTP {scheme}"),
                        (Some("apiKey"), _) => {
                            format!("{} `{}`", text(&s["in"]), text(&s["name"]))
                        }
                        (t, _) => t.unwrap_or_default().to_owned(),
                    },
                    description: text(&s["description"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let schemas = doc["components"]["schemas"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(name, schema)| {
                    let parts = schema["allOf"].as_array();
                    let bases = parts
                        .map(|ps| ps.iter().filter_map(ref_name).map(str::to_owned).collect())
                        .unwrap_or_default();
                    let mut own = fields(schema);
                    for part in parts
                        .into_iter()
                        .flatten()
                        .filter(|p| ref_name(p).is_none())
                    {
                        own.extend(fields(part));
                    }
                    SchemaView {
                        name: name.clone(),
                        anchor: schema_anchor(name),
                        kind: describe(schema).0,
                        description: text(&schema["description"]),
                        bases,
                        fields: own,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    View {
        title: text(&doc["info"]["title"]),
        intro: paragraphs(&doc["info"]["description"]),
        schemes,
        tags,
        errors: crate::error::TABLE
            .iter()
            .map(|(_, code, kind, status)| ErrorRow {
                code: (*code).to_owned(),
                status: *status,
                kind: (*kind).to_owned(),
            })
            .collect(),
        schemas,
        operations: count,
    }
}

fn operation(method: &str, path: &str, op: &Value) -> Operation {
    let credentials = op["security"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().cloned())
                .collect()
        })
        .unwrap_or_default();
    let parameters = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let (kind, link) = describe(&p["schema"]);
                    Field {
                        name: text(&p["name"]),
                        location: text(&p["in"]),
                        kind,
                        link,
                        required: p["required"].as_bool().unwrap_or(false),
                        description: text(&p["description"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let responses = op["responses"]
        .as_object()
        .map(|rs| {
            rs.iter()
                .map(|(status, r)| ResponseView {
                    status: status.clone(),
                    description: text(&r["description"]),
                    media: media(&r["content"])
                        .into_iter()
                        // Error bodies are all `Error`: the codes say more.
                        .map(|mut m| {
                            if r.get("x-candor-codes").is_some() {
                                m.example = None;
                            }
                            m
                        })
                        .collect(),
                    codes: r["x-candor-codes"]
                        .as_array()
                        .map(|c| c.iter().map(text).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Operation {
        id: text(&op["operationId"]),
        method: method.to_uppercase(),
        path: path.to_owned(),
        summary: text(&op["summary"]),
        description: paragraphs(&op["description"]),
        credentials,
        parameters,
        body: media(&op["requestBody"]["content"]),
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_read_as_a_person_would_say_them() {
        let d = |v: Value| describe(&v).0;
        assert_eq!(d(json!({"type": ["string", "null"]})), "string or null");
        assert_eq!(
            d(json!({"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}})),
            "array of Receipt"
        );
        assert_eq!(
            d(
                json!({"type": "object", "additionalProperties": {"type": "integer", "format": "int32"}})
            ),
            "map of integer (int32)"
        );
        assert_eq!(
            d(json!({"enum": ["grant", "refuse"]})),
            "one of: grant, refuse"
        );
        assert_eq!(d(json!({})), "any");
        assert_eq!(
            d(json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/GpcDto"}]})),
            "GpcDto or null"
        );
        assert_eq!(
            describe(&json!({"$ref": "#/components/schemas/Error"}))
                .1
                .as_deref(),
            Some("schema-Error")
        );
    }

    #[test]
    fn every_operation_of_the_document_is_on_the_page() {
        let doc = crate::openapi::document();
        let v = view(&doc);
        let on_page: usize = v.tags.iter().map(|t| t.operations.len()).sum();
        assert_eq!(on_page, v.operations);
        assert!(v.operations > 0);
    }
}
