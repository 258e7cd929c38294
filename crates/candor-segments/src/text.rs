//! The readable text form of a rule: what an operator types and what the dashboard
//! shows. `Display` prints the canonical text and [`parse_text`] reads it back
//! (`parse_text(&rule.to_string()) == rule` for every valid rule).
//!
//! Grammar (whitespace between tokens is free; keywords are lowercase):
//!
//! ```text
//! rule    := or
//! or      := and ("or" and)*                 -- a chain is one Any
//! and     := unary ("and" unary)*            -- a chain is one All
//! unary   := "not" unary | "(" rule ")" | cond
//! cond    := "field" "." FIELD test          -- FIELD: a field slug (age_band)
//!          | "trait" "." NAME test           -- NAME: [A-Za-z_][A-Za-z0-9_]*
//!          | ("count" | "days") "(" match ")" "in" "last" INT ("day" | "days") CMP INT
//!          | "seen" "(" match ")" "within" INT ("day" | "days")
//!          | "segment" STRING
//! test    := CMP scalar | "in" "[" scalar ("," scalar)* "]" | "has" STRING | "exists"
//! match   := ("track" | "page" | "screen") [STRING] ["where" prop ("and" prop)*]
//! prop    := NAME "=" scalar
//! scalar  := STRING | INT | "true" | "false"
//! CMP     := "=" | "!=" | "<" | "<=" | ">" | ">="
//! STRING  := '"' (any char but '"' or '\', or "\\\"", or "\\\\")* '"'
//! INT     := ["-"] digits (a 64-bit integer)
//! ```
//!
//! Precedence is `not` > `and` > `or`; parentheses only group (`(a and b) and c` is
//! `All[All[a, b], c]`, which is how the canonical text prints nested chains). Limits
//! are checked while parsing, so hostile input costs bounded work and never recursion
//! deeper than a small constant; errors carry the byte offset.

use crate::rule::{
    check_string, is_event_kind, is_name, window_ok, At, Cmp, Cond, EventMatch, Limit, Measure,
    Rule, RuleError, Scalar, Test, MAX_DEPTH, MAX_IN, MAX_NODES, MAX_PROPS,
};
use candor_core::event::EventKind;
use candor_core::field::FieldName;
use std::fmt::{self, Write as _};

// ---------------------------------------------------------------- printing

pub(crate) fn write_str_lit(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => write_str_lit(f, s),
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::Cmp(c, s) => write!(f, "{} {s}", c.symbol()),
            Test::In(v) => {
                f.write_str("in [")?;
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s}")?;
                }
                f.write_str("]")
            }
            Test::Has(s) => {
                f.write_str("has ")?;
                write_str_lit(f, s)
            }
            Test::Exists => f.write_str("exists"),
        }
    }
}

impl fmt::Display for EventMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(n) = &self.name {
            f.write_char(' ')?;
            write_str_lit(f, n)?;
        }
        for (i, (k, v)) in self.props.iter().enumerate() {
            f.write_str(if i == 0 { " where " } else { " and " })?;
            write!(f, "{k} = {v}")?;
        }
        Ok(())
    }
}

fn days(n: u16) -> &'static str {
    if n == 1 {
        "day"
    } else {
        "days"
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Field { field, test } => write!(f, "field.{field} {test}"),
            Cond::Trait { name, test } => write!(f, "trait.{name} {test}"),
            Cond::Usage {
                events,
                measure,
                window_days,
                cmp,
                n,
            } => write!(
                f,
                "{}({events}) in last {window_days} {} {} {n}",
                measure.name(),
                days(*window_days),
                cmp.symbol()
            ),
            Cond::Seen {
                events,
                within_days,
            } => write!(
                f,
                "seen({events}) within {within_days} {}",
                days(*within_days)
            ),
            Cond::Segment(name) => {
                f.write_str("segment ")?;
                write_str_lit(f, name)
            }
        }
    }
}

fn write_child(f: &mut fmt::Formatter<'_>, r: &Rule) -> fmt::Result {
    match r {
        Rule::All(_) | Rule::Any(_) => write!(f, "({r})"),
        _ => write!(f, "{r}"),
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::All(v) | Rule::Any(v) => {
                let op = if matches!(self, Rule::All(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, r) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    write_child(f, r)?;
                }
                Ok(())
            }
            Rule::Not(r) => {
                f.write_str("not ")?;
                write_child(f, r)
            }
            Rule::Cond(c) => write!(f, "{c}"),
        }
    }
}

// ---------------------------------------------------------------- lexing

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Cmp(Cmp),
    End,
}

/// Bounds the lexer's work: more tokens than any valid rule needs is refused early.
const MAX_TOKENS: usize = 8 * 1024;

fn syntax(pos: usize, expected: &'static str) -> RuleError {
    RuleError::Syntax {
        at: At::Byte(pos),
        expected,
    }
}

fn too_large(pos: usize, limit: Limit) -> RuleError {
    RuleError::TooLarge {
        at: At::Byte(pos),
        limit,
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, RuleError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if out.len() > MAX_TOKENS {
            return Err(too_large(i, Limit::Nodes));
        }
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b'.' => Tok::Dot,
            b'=' => Tok::Cmp(Cmp::Eq),
            b'!' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 1;
                    Tok::Cmp(Cmp::Ne)
                } else {
                    return Err(syntax(i, "'!='"));
                }
            }
            b'<' | b'>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                if eq {
                    i += 1;
                }
                Tok::Cmp(match (c, eq) {
                    (b'<', false) => Cmp::Lt,
                    (b'<', true) => Cmp::Le,
                    (_, false) => Cmp::Gt,
                    (_, true) => Cmp::Ge,
                })
            }
            b'"' => {
                let mut s = String::new();
                let mut j = i + 1;
                // Copy runs of plain bytes at once; a quote or backslash is ASCII, so
                // the slice boundaries are always char boundaries.
                let mut run = j;
                loop {
                    match b.get(j) {
                        None => return Err(syntax(start, "a closing '\"'")),
                        Some(b'"') => {
                            s.push_str(&src[run..j]);
                            break;
                        }
                        Some(b'\\') => {
                            s.push_str(&src[run..j]);
                            match b.get(j + 1) {
                                Some(e @ (b'"' | b'\\')) => s.push(*e as char),
                                _ => return Err(syntax(j, "'\\\"' or '\\\\'")),
                            }
                            j += 2;
                            run = j;
                        }
                        Some(_) => j += 1,
                    }
                    if j - start > crate::rule::MAX_STRING * 2 + 2 {
                        return Err(too_large(start, Limit::String));
                    }
                }
                check_string(&s).map_err(|l| too_large(start, l))?;
                i = j;
                Tok::Str(s)
            }
            b'-' | b'0'..=b'9' => {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let text = &src[i..j];
                if text == "-" {
                    return Err(syntax(i, "a number"));
                }
                let n: i64 = text
                    .parse()
                    .map_err(|_| syntax(i, "a number that fits 64 bits"))?;
                i = j - 1;
                Tok::Int(n)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let s = &src[i..j];
                check_string(s).map_err(|l| too_large(i, l))?;
                i = j - 1;
                Tok::Ident(s.to_owned())
            }
            _ => return Err(syntax(i, "a keyword, name, string, number or operator")),
        };
        i += 1;
        out.push((start, tok));
    }
    out.push((b.len(), Tok::End));
    Ok(out)
}

// ---------------------------------------------------------------- parsing

/// Parses the text form. Never panics; refuses anything past the limits.
pub fn parse_text(src: &str) -> Result<Rule, RuleError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        nodes: 0,
        nesting: 0,
    };
    let (rule, _) = p.or()?;
    if p.peek() != &Tok::End {
        return Err(syntax(p.pos(), "'and', 'or' or the end"));
    }
    // The checks above are the same as validate's; this keeps the two in step.
    rule.validate()?;
    Ok(rule)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    nodes: usize,
    /// Parentheses and `not`s open: bounds recursion (each adds at most one AST level
    /// in canonical text, so twice the depth limit is generous).
    nesting: usize,
}

type Parsed = (Rule, usize);

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::End, |t| &t.1)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(0, |t| t.0)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str, expected: &'static str) -> Result<(), RuleError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(syntax(self.pos(), expected))
        }
    }

    fn expect(&mut self, t: Tok, expected: &'static str) -> Result<(), RuleError> {
        if *self.peek() == t {
            self.i += 1;
            Ok(())
        } else {
            Err(syntax(self.pos(), expected))
        }
    }

    fn node(&mut self, pos: usize, depth: usize) -> Result<(), RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(too_large(pos, Limit::Nodes));
        }
        if depth > MAX_DEPTH {
            return Err(too_large(pos, Limit::Depth));
        }
        Ok(())
    }

    fn chain(
        &mut self,
        kw: &str,
        sub: fn(&mut Self) -> Result<Parsed, RuleError>,
        make: fn(Vec<Rule>) -> Rule,
    ) -> Result<Parsed, RuleError> {
        let pos = self.pos();
        let first = sub(self)?;
        if !self.is_kw(kw) {
            return Ok(first);
        }
        let mut depth = first.1;
        let mut items = vec![first.0];
        while self.eat_kw(kw) {
            let (r, d) = sub(self)?;
            depth = depth.max(d);
            items.push(r);
        }
        self.node(pos, depth + 1)?;
        Ok((make(items), depth + 1))
    }

    fn or(&mut self) -> Result<Parsed, RuleError> {
        self.chain("or", Self::and, Rule::Any)
    }

    fn and(&mut self) -> Result<Parsed, RuleError> {
        self.chain("and", Self::unary, Rule::All)
    }

    fn unary(&mut self) -> Result<Parsed, RuleError> {
        let pos = self.pos();
        let is_not = self.is_kw("not");
        if is_not || *self.peek() == Tok::LParen {
            self.nesting += 1;
            if self.nesting > 2 * MAX_DEPTH + 2 {
                return Err(too_large(pos, Limit::Depth));
            }
            self.i += 1;
            let out = if is_not {
                let (r, d) = self.unary()?;
                self.node(pos, d + 1)?;
                Ok((Rule::Not(Box::new(r)), d + 1))
            } else {
                let inner = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            };
            self.nesting -= 1;
            return out;
        }
        let c = self.cond()?;
        self.node(pos, 1)?;
        Ok((Rule::Cond(c), 1))
    }

    fn name(&mut self, expected: &'static str) -> Result<(usize, String), RuleError> {
        let pos = self.pos();
        match self.next() {
            Tok::Ident(s) => Ok((pos, s)),
            _ => Err(syntax(pos, expected)),
        }
    }

    fn string(&mut self, expected: &'static str) -> Result<(usize, String), RuleError> {
        let pos = self.pos();
        match self.next() {
            Tok::Str(s) => Ok((pos, s)),
            _ => Err(syntax(pos, expected)),
        }
    }

    fn int(&mut self, expected: &'static str) -> Result<(usize, i64), RuleError> {
        let pos = self.pos();
        match self.next() {
            Tok::Int(n) => Ok((pos, n)),
            _ => Err(syntax(pos, expected)),
        }
    }

    fn window(&mut self) -> Result<u16, RuleError> {
        let (pos, n) = self.int("a number of days")?;
        let w = u16::try_from(n)
            .ok()
            .filter(|w| window_ok(*w))
            .ok_or(RuleError::BadWindow { at: At::Byte(pos) })?;
        if !(self.eat_kw("days") || self.eat_kw("day")) {
            return Err(syntax(self.pos(), "'days'"));
        }
        Ok(w)
    }

    fn scalar(&mut self) -> Result<Scalar, RuleError> {
        let pos = self.pos();
        match self.next() {
            Tok::Str(s) => Ok(Scalar::Text(s)),
            Tok::Int(n) => Ok(Scalar::Number(n)),
            Tok::Ident(s) if s == "true" => Ok(Scalar::Bool(true)),
            Tok::Ident(s) if s == "false" => Ok(Scalar::Bool(false)),
            _ => Err(syntax(pos, "a string, a number, true or false")),
        }
    }

    fn test(&mut self) -> Result<Test, RuleError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Cmp(c) => {
                self.i += 1;
                Ok(Test::Cmp(c, self.scalar()?))
            }
            Tok::Ident(k) if k == "in" => {
                self.i += 1;
                self.expect(Tok::LBracket, "'['")?;
                let mut v = vec![self.scalar()?];
                while *self.peek() == Tok::Comma {
                    self.i += 1;
                    if v.len() >= MAX_IN {
                        return Err(too_large(pos, Limit::InValues));
                    }
                    v.push(self.scalar()?);
                }
                self.expect(Tok::RBracket, "',' or ']'")?;
                Ok(Test::In(v))
            }
            Tok::Ident(k) if k == "has" => {
                self.i += 1;
                Ok(Test::Has(self.string("a string after 'has'")?.1))
            }
            Tok::Ident(k) if k == "exists" => {
                self.i += 1;
                Ok(Test::Exists)
            }
            _ => Err(syntax(pos, "a comparison, 'in', 'has' or 'exists'")),
        }
    }

    fn event_match(&mut self) -> Result<EventMatch, RuleError> {
        let (pos, k) = self.name("track, page or screen")?;
        let kind = EventKind::parse(&k)
            .filter(|k| is_event_kind(*k))
            .ok_or(RuleError::BadEventKind { at: At::Byte(pos) })?;
        let name = match self.peek() {
            Tok::Str(_) => {
                let (pos, s) = self.string("an event name")?;
                if s.is_empty() {
                    return Err(RuleError::EmptyName {
                        at: At::Byte(pos),
                        what: "an event name",
                    });
                }
                Some(s)
            }
            _ => None,
        };
        let mut props: Vec<(String, Scalar)> = Vec::new();
        let props_pos = self.pos();
        if self.eat_kw("where") {
            loop {
                if props.len() >= MAX_PROPS {
                    return Err(too_large(self.pos(), Limit::Props));
                }
                let (_, key) = self.name("a property name")?;
                self.expect(Tok::Cmp(Cmp::Eq), "'=' (properties must equal)")?;
                props.push((key, self.scalar()?));
                if !self.eat_kw("and") {
                    break;
                }
            }
        }
        let mut m = EventMatch { kind, name, props };
        m.normalize();
        if m.props.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(RuleError::Props {
                at: At::Byte(props_pos),
            });
        }
        Ok(m)
    }

    fn cond(&mut self) -> Result<Cond, RuleError> {
        let (pos, kw) =
            self.name("a condition (field, trait, count, days, seen, segment), 'not' or '('")?;
        match kw.as_str() {
            "field" => {
                self.expect(Tok::Dot, "'.' after field")?;
                let (npos, n) = self.name("a field name")?;
                let field = FieldName::parse(&n).map_err(|_| RuleError::BadName {
                    at: At::Byte(npos),
                    what: "a field name",
                })?;
                Ok(Cond::Field {
                    field,
                    test: self.test()?,
                })
            }
            "trait" => {
                self.expect(Tok::Dot, "'.' after trait")?;
                let (_, name) = self.name("a trait name")?;
                debug_assert!(is_name(&name));
                Ok(Cond::Trait {
                    name,
                    test: self.test()?,
                })
            }
            "count" | "days" => {
                let measure = Measure::from_name(&kw).unwrap_or(Measure::Count);
                self.expect(Tok::LParen, "'('")?;
                let events = self.event_match()?;
                self.expect(Tok::RParen, "')'")?;
                self.expect_kw("in", "'in last N days'")?;
                self.expect_kw("last", "'last N days'")?;
                let window_days = self.window()?;
                let cpos = self.pos();
                let cmp = match self.next() {
                    Tok::Cmp(c) => c,
                    _ => return Err(syntax(cpos, "a comparison")),
                };
                let (npos, n) = self.int("a whole number")?;
                let n = u32::try_from(n)
                    .map_err(|_| syntax(npos, "a whole number from 0 to 4294967295"))?;
                Ok(Cond::Usage {
                    events,
                    measure,
                    window_days,
                    cmp,
                    n,
                })
            }
            "seen" => {
                self.expect(Tok::LParen, "'('")?;
                let events = self.event_match()?;
                self.expect(Tok::RParen, "')'")?;
                self.expect_kw("within", "'within N days'")?;
                Ok(Cond::Seen {
                    events,
                    within_days: self.window()?,
                })
            }
            "segment" => {
                let (spos, s) = self.string("a quoted segment name")?;
                if s.is_empty() {
                    return Err(RuleError::EmptyName {
                        at: At::Byte(spos),
                        what: "a segment name",
                    });
                }
                Ok(Cond::Segment(s))
            }
            _ => Err(syntax(
                pos,
                "a condition (field, trait, count, days, seen, segment), 'not' or '('",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{from_json, to_json};
    use crate::testgen;
    use proptest::prelude::*;

    const EXAMPLES: &[&str] = &[
        r#"field.age_band = "25-34""#,
        r#"field.interests has "running""#,
        "field.shoe_size >= 42",
        r#"field.age_band in ["18-24", "25-34"]"#,
        "field.birth_month exists",
        r#"trait.plan = "gold""#,
        "trait.newsletter = true",
        r#"days(track "App Session" where app_category = "fitness") in last 30 days >= 3"#,
        "count(screen) in last 7 days > 10",
        r#"seen(page where category = "travel") within 14 days"#,
        r#"segment "frequent_travellers""#,
        r#"not field.age_band = "18-24""#,
    ];

    #[test]
    fn examples_parse_and_print_canonically() {
        for e in EXAMPLES {
            let r = parse_text(e).unwrap_or_else(|err| panic!("{e}: {err}"));
            assert_eq!(&r.to_string(), e);
        }
    }

    #[test]
    fn precedence_and_flattening() {
        let r =
            parse_text("field.a exists or field.b exists and not field.c exists or field.d exists")
                .unwrap();
        let Rule::Any(items) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[1], Rule::All(v) if v.len() == 2 && matches!(v[1], Rule::Not(_))));
        let r = parse_text(
            "(field.a exists or field.b exists) and not (field.c exists and field.d exists)",
        )
        .unwrap();
        assert_eq!(
            r.to_string(),
            "(field.a exists or field.b exists) and not (field.c exists and field.d exists)"
        );
        // Parentheses only group: a nested chain stays nested.
        let r = parse_text("(field.a exists and field.b exists) and field.c exists").unwrap();
        assert!(matches!(&r, Rule::All(v) if v.len() == 2));
        assert_eq!(
            parse_text("((field.a exists))").unwrap().to_string(),
            "field.a exists"
        );
    }

    #[test]
    fn escapes_and_props_order() {
        let r =
            parse_text(r#"count(track "a \"b\" \\ c" where z = 1 and a = "x") in last 1 day < 2"#)
                .unwrap();
        assert_eq!(
            r.to_string(),
            r#"count(track "a \"b\" \\ c" where a = "x" and z = 1) in last 1 day < 2"#
        );
    }

    #[test]
    fn errors_carry_positions_and_codes() {
        let cases: &[(&str, &str, usize)] = &[
            ("field.age_band", "segment_syntax", 14),
            ("field.a = ", "segment_syntax", 10),
            ("field.A exists", "segment_bad_name", 6),
            ("count(track) in last 0 days > 1", "segment_bad_window", 21),
            (
                "count(track) in last 401 days > 1",
                "segment_bad_window",
                21,
            ),
            ("seen(identify) within 3 days", "segment_bad_event_kind", 5),
            ("segment \"\"", "segment_empty_name", 8),
            (
                "seen(page where a = 1 and a = 2) within 3 days",
                "segment_bad_properties",
                10,
            ),
            ("field.a = \"x", "segment_syntax", 10),
            ("field.a = \"\\n\"", "segment_syntax", 11),
            ("field.a = 99999999999999999999", "segment_syntax", 10),
            ("field.a exists field.b exists", "segment_syntax", 15),
        ];
        for (src, code, pos) in cases {
            let e = parse_text(src).unwrap_err();
            assert_eq!((e.code(), e.position()), (*code, Some(*pos)), "{src}: {e}");
        }
        let long = format!("segment \"{}\"", "x".repeat(201));
        assert_eq!(parse_text(&long).unwrap_err().code(), "segment_too_large");
        let deep = format!("{}field.a exists", "not ".repeat(8));
        assert_eq!(parse_text(&deep).unwrap_err().code(), "segment_too_large");
        let ok = format!("{}field.a exists", "not ".repeat(7));
        assert!(parse_text(&ok).is_ok());
        let parens = format!("{}field.a exists{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(parse_text(&parens).unwrap_err().code(), "segment_too_large");
        let wide = vec!["field.a exists"; 65].join(" or ");
        assert_eq!(parse_text(&wide).unwrap_err().code(), "segment_too_large");
        let many = format!("field.a in [{}]", vec!["1"; 51].join(", "));
        assert_eq!(parse_text(&many).unwrap_err().code(), "segment_too_large");
        let props: Vec<String> = (0..9).map(|i| format!("p{i} = 1")).collect();
        let props = format!("seen(page where {}) within 1 day", props.join(" and "));
        assert_eq!(parse_text(&props).unwrap_err().code(), "segment_too_large");
        // Errors never repeat the input.
        let e = parse_text("field.a = \"secret-value")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn text_round_trips(r in testgen::rule()) {
            let text = r.to_string();
            prop_assert_eq!(parse_text(&text).map_err(|e| format!("{text}: {e}")), Ok(r.clone()));
            // The JSON form agrees with the text form.
            let json = to_json(&r);
            prop_assert_eq!(from_json(&json), Ok(r.clone()));
            let through = serde_json::to_string(&json).unwrap();
            let back: serde_json::Value = serde_json::from_str(&through).unwrap();
            prop_assert_eq!(from_json(&back).map(|r| r.to_string()), Ok(text));
        }

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>()) {
            if let Ok(r) = parse_text(&s) {
                prop_assert_eq!(parse_text(&r.to_string()), Ok(r));
            }
        }

        #[test]
        fn rule_like_text_never_panics(
            words in prop::collection::vec(prop::sample::select(vec![
                "field", "trait", ".", "a", "=", "!=", "<", ">=", "in", "[", "]", ",", "has",
                "exists", "not", "and", "or", "(", ")", "\"x\"", "1", "-", "true", "count",
                "days", "seen", "track", "page", "where", "last", "within", "day", "segment",
                "\"", "\\", "400", "401",
            ]), 0..40)
        ) {
            let s = words.join(" ");
            if let Ok(r) = parse_text(&s) {
                prop_assert_eq!(parse_text(&r.to_string()), Ok(r));
            }
        }
    }
}
