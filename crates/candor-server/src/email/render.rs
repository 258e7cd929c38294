//! Campaign templates (issue 16): the operator's subject line, text part and HTML part
//! in minijinja, rendered per recipient with only what the list's purpose may use.
//!
//! The context is `fields` (every volunteered field whose `purposes` name the list's
//! purpose, the person's value or the empty string), `list` (`name`, `title`) and
//! `unsubscribe_url`. Undefined names are errors (strict), so a template that reaches
//! for a field the purpose may not use is refused when the campaign is saved
//! ([`check`]), not discovered per message. The HTML part is autoescaped; the subject
//! line and the text part are not (they are not HTML), and a subject line may not
//! render a line break (header injection).

use crate::config::email::ListSpec;
use candor_core::field::FieldCatalog;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::BTreeMap;

/// One campaign's templates.
#[derive(Clone, Debug)]
pub struct Templates<'a> {
    pub subject_line: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
}

/// What a recipient gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject_line: String,
    pub text: String,
    pub html: Option<String>,
}

#[derive(Serialize)]
struct ListCtx<'a> {
    name: &'a str,
    title: &'a str,
}

#[derive(Serialize)]
struct Ctx<'a> {
    fields: &'a BTreeMap<String, String>,
    list: ListCtx<'a>,
    unsubscribe_url: &'a str,
}

/// Why templates are refused.
#[derive(Debug, thiserror::Error)]
#[error("{part}: {message}")]
pub struct TemplateError {
    pub part: &'static str,
    pub message: String,
}

/// The field names a list's templates may use.
pub fn allowed_fields(fields: &FieldCatalog, list: &ListSpec) -> Vec<String> {
    fields
        .iter()
        .filter(|f| f.used_by(&list.purpose))
        .map(|f| f.name.as_str().to_owned())
        .collect()
}

/// A compiled set of templates, reused for every recipient of a batch.
pub struct Renderer<'a> {
    env: Environment<'a>,
    has_html: bool,
}

impl<'a> Renderer<'a> {
    pub fn new(t: &Templates<'a>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let add = |env: &mut Environment<'a>, name: &'static str, part, src: &'a str| {
            if src.len() > 200_000 {
                return Err(TemplateError {
                    part,
                    message: "longer than 200000 bytes".into(),
                });
            }
            env.add_template(name, src).map_err(|e| TemplateError {
                part,
                message: e.to_string(),
            })
        };
        add(&mut env, "subject.txt", "subject_line", t.subject_line)?;
        add(&mut env, "body.txt", "text_body", t.text)?;
        if let Some(h) = t.html {
            add(&mut env, "body.html", "html_body", h)?;
        }
        Ok(Self {
            env,
            has_html: t.html.is_some(),
        })
    }

    pub fn render(
        &self,
        list: &ListSpec,
        fields: &BTreeMap<String, String>,
        unsubscribe_url: &str,
    ) -> Result<Rendered, TemplateError> {
        let ctx = Ctx {
            fields,
            list: ListCtx {
                name: &list.name,
                title: &list.title,
            },
            unsubscribe_url,
        };
        let one = |name: &str, part: &'static str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| TemplateError {
                    part,
                    message: e.to_string(),
                })
        };
        let subject_line = one("subject.txt", "subject_line")?.trim().to_owned();
        if subject_line.is_empty()
            || subject_line.contains(['\r', '\n'])
            || subject_line.len() > 500
        {
            return Err(TemplateError {
                part: "subject_line",
                message: "renders empty, longer than 500 bytes, or with a line break".into(),
            });
        }
        Ok(Rendered {
            subject_line,
            text: one("body.txt", "text_body")?,
            html: if self.has_html {
                Some(one("body.html", "html_body")?)
            } else {
                None
            },
        })
    }
}

/// Checks a campaign's templates against what its list's purpose may use: they parse,
/// and render with every allowed field empty (a name outside them is undefined).
pub fn check(t: &Templates<'_>, list: &ListSpec, allowed: &[String]) -> Result<(), TemplateError> {
    let fields = allowed.iter().map(|f| (f.clone(), String::new())).collect();
    Renderer::new(t)?
        .render(
            list,
            &fields,
            "https://example.invalid/email/unsubscribe?t=x",
        )
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::PurposeId;

    fn list() -> ListSpec {
        ListSpec {
            name: "news".into(),
            title: "News & views".into(),
            description: String::new(),
            purpose: PurposeId::parse("email_marketing").unwrap(),
        }
    }

    fn t<'a>(s: &'a str, text: &'a str, html: Option<&'a str>) -> Templates<'a> {
        Templates {
            subject_line: s,
            text,
            html,
        }
    }

    #[test]
    fn renders_allowed_fields_and_escapes_html_only() {
        let r = Renderer::new(&t(
            "Hi {{ fields.first_name }}",
            "{{ list.title }} <{{ unsubscribe_url }}>",
            Some("<p>{{ list.title }} {{ fields.first_name }}</p>"),
        ))
        .unwrap();
        let fields = BTreeMap::from([("first_name".to_owned(), "<Ann>".to_owned())]);
        let out = r.render(&list(), &fields, "https://x/u?t=1&a=2").unwrap();
        assert_eq!(out.subject_line, "Hi <Ann>");
        assert_eq!(out.text, "News & views <https://x/u?t=1&a=2>");
        assert_eq!(out.html.unwrap(), "<p>News &amp; views &lt;Ann&gt;</p>");
    }

    #[test]
    fn refuses_fields_the_purpose_may_not_use_and_bad_subjects() {
        let allowed = vec!["first_name".to_owned()];
        assert!(check(
            &t("Hi {{ fields.first_name }}", "x", None),
            &list(),
            &allowed
        )
        .is_ok());
        let e = check(&t("Hi {{ fields.income }}", "x", None), &list(), &allowed).unwrap_err();
        assert_eq!(e.part, "subject_line");
        let e = check(&t("Hi", "{{ secret }}", None), &list(), &allowed).unwrap_err();
        assert_eq!(e.part, "text_body");
        let e = check(&t("Hi {% if %}", "x", None), &list(), &allowed).unwrap_err();
        assert_eq!(e.part, "subject_line");
        let e = check(&t("a{{ '\\n' }}b", "x", None), &list(), &allowed).unwrap_err();
        assert_eq!(e.part, "subject_line");
    }
}
