//! Consent prompt variants, their stable assignment to people, and the linter that
//! refuses a variant with a dark pattern (invariant 8: refusing is as easy as accepting).
//!
//! A [`Variant`] says what a prompt looks like: its layout, the controls on its first
//! layer and their order, its wording per language and extra CSS. [`assign`] picks one
//! per anonymous id by a hash, so a person sees the same variant on every page without
//! Candor storing who saw what.
//!
//! [`lint`] judges a variant twice over: by what it declares (a missing reject button,
//! pre-ticked boxes, bundled purposes, hidden notices, "legitimate interest" for a
//! consent purpose, a close button that accepts, the operator's forbidden wording), and
//! by what a browser actually rendered ([`Rendered`]: boxes, colours and fonts measured
//! by `candor-lint.js`), because CSS can make a declared "Reject all" tiny, grey or
//! pushed out of view. Each [`Violation`] names its rule and the element.

use crate::ids::{PurposeId, VariantId};
use crate::lang::Language;
use crate::purpose::Catalog;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A centred dialog.
    Modal,
    /// A dialog along the bottom of the viewport.
    Bar,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Modal => "modal",
            Layout::Bar => "bar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Layout::Modal, Layout::Bar]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// A first-layer control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Control {
    Accept,
    Reject,
    Choose,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Accept => "accept",
            Control::Reject => "reject",
            Control::Choose => "choose",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Control::Accept, Control::Reject, Control::Choose]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// What a close (×) button records, if the variant has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseButton {
    None,
    /// Closing refuses every purpose (a fair shortcut for "Reject all").
    Reject,
    /// Closing accepts: consent by dismissal, refused by the linter.
    Accept,
}

impl CloseButton {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseButton::None => "none",
            CloseButton::Reject => "reject",
            CloseButton::Accept => "accept",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [CloseButton::None, CloseButton::Reject, CloseButton::Accept]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// The wording a prompt can show, by key (`title`, `intro`, `accept`, ...).
pub const TEXT_KEYS: &[&str] = &[
    "title",
    "intro",
    "accept",
    "reject",
    "choose",
    "chooseTitle",
    "save",
    "back",
    "manage",
    "close",
    "policy",
    "gpcNote",
    "gpcLocked",
    "legitimateInterest",
    "error",
    "myData",
];

/// One prompt design. Only fair variants are ever saved (see [`lint`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub id: VariantId,
    /// Share of people assigned to it among the active variants.
    pub weight: u32,
    pub layout: Layout,
    /// First-layer controls, in order.
    pub buttons: Vec<Control>,
    pub preticked: Vec<PurposeId>,
    /// Purposes sharing one checkbox.
    pub bundles: Vec<Vec<PurposeId>>,
    pub hide_notices: Vec<PurposeId>,
    /// Purposes presented as "legitimate interest" (on unless objected to).
    pub legitimate_interest: Vec<PurposeId>,
    pub close_button: CloseButton,
    /// Wording per language, over the built-in texts (key → text).
    pub texts: BTreeMap<Language, BTreeMap<String, String>>,
    /// Extra CSS applied inside the prompt's shadow root.
    pub css: String,
}

impl Variant {
    /// The built-in design: a centred dialog with "Accept all", "Reject all" and
    /// "Choose" side by side in one style.
    pub fn standard() -> Self {
        Self {
            id: VariantId::parse("standard").unwrap_or_else(|_| unreachable!("a valid slug")),
            weight: 1,
            layout: Layout::Modal,
            buttons: vec![Control::Accept, Control::Reject, Control::Choose],
            preticked: Vec::new(),
            bundles: Vec::new(),
            hide_notices: Vec::new(),
            legitimate_interest: Vec::new(),
            close_button: CloseButton::None,
            texts: BTreeMap::new(),
            css: String::new(),
        }
    }
}

/// The variant an anonymous id sees: a hash of the id picks a point in the variants'
/// summed weights. Stable for as long as the list and weights are; no state kept.
pub fn assign<'a>(variants: &'a [Variant], unit: &str) -> Option<&'a Variant> {
    let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return variants.first();
    }
    let digest = Sha256::digest(format!("candor-prompt-v1:{unit}").as_bytes());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&digest[..8]);
    let mut point = u64::from_be_bytes(eight) % total;
    for v in variants {
        let w = u64::from(v.weight);
        if point < w {
            return Some(v);
        }
        point -= w;
    }
    variants.last()
}

/// An sRGB colour as the browser computed it, composited onto what is behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// WCAG 2 relative luminance.
    pub fn luminance(self) -> f64 {
        let lin = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// WCAG 2 contrast ratio, 1 to 21.
    pub fn contrast(self, other: Rgb) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// A first-layer control as rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedButton {
    /// `accept`, `reject`, `choose`, `close`, or what else the markup says.
    pub role: String,
    pub rect: Rect,
    pub color: Rgb,
    pub background: Rgb,
    pub font_size: f64,
    pub font_weight: u32,
    /// Displayed, not transparent, not clipped to nothing.
    pub visible: bool,
    /// Inside the viewport when the prompt first shows, without scrolling.
    pub in_viewport: bool,
}

/// One checkbox of the second layer as rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedChoice {
    /// The purposes this one checkbox decides.
    pub purposes: Vec<String>,
    pub checked: bool,
    pub label: String,
}

/// What a browser rendered for a variant, for someone who has not chosen yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The prompt's own background.
    pub surface: Rgb,
    /// First-layer controls in document (and tab) order.
    pub first_layer: Vec<RenderedButton>,
    pub choices: Vec<RenderedChoice>,
    /// purpose → its notice text as visible on the second layer ("" when not shown).
    pub notices: BTreeMap<String, String>,
}

/// One reason a variant is unfair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// A stable rule name, e.g. `reject_not_on_first_layer`.
    pub rule: &'static str,
    /// The element at fault, e.g. `button.reject` or `checkbox analytics`.
    pub element: String,
    pub detail: String,
}

fn v(rule: &'static str, element: impl Into<String>, detail: impl Into<String>) -> Violation {
    Violation {
        rule,
        element: element.into(),
        detail: detail.into(),
    }
}

/// The least contrast a button's text may have on its background (WCAG AA).
pub const MIN_TEXT_CONTRAST: f64 = 4.5;
/// Accept and reject may differ at most this much in area (smaller / larger).
pub const MIN_AREA_RATIO: f64 = 0.9;
/// ... and at most this factor in how strongly they stand out from the prompt.
pub const MAX_WEIGHT_FACTOR: f64 = 1.5;

/// Every rule the variant breaks, given the catalog, the operator's forbidden wording
/// and, when available, what a browser rendered. Empty means fair.
pub fn lint(
    variant: &Variant,
    catalog: &Catalog,
    forbidden: &[String],
    rendered: Option<&Rendered>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    declared(variant, forbidden, &mut out);
    if let Some(r) = rendered {
        measured(r, catalog, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn declared(variant: &Variant, forbidden: &[String], out: &mut Vec<Violation>) {
    for c in [Control::Accept, Control::Reject] {
        if !variant.buttons.contains(&c) {
            out.push(v(
                "reject_not_on_first_layer",
                format!("button.{}", c.as_str()),
                format!(
                    "the first layer must offer both accept and reject; {} is missing",
                    c.as_str()
                ),
            ));
        }
    }
    let pos = |c| variant.buttons.iter().position(|b| *b == c);
    if let (Some(a), Some(r)) = (pos(Control::Accept), pos(Control::Reject)) {
        if a.abs_diff(r) != 1 {
            out.push(v(
                "unequal_prominence",
                "button.reject",
                "order: accept and reject must sit next to each other, with nothing between them",
            ));
        }
    }
    for p in &variant.preticked {
        out.push(v(
            "pre_ticked",
            format!("checkbox {p}"),
            "no purpose may be ticked before the person ticks it",
        ));
    }
    for b in variant.bundles.iter().filter(|b| b.len() > 1) {
        let names: Vec<&str> = b.iter().map(PurposeId::as_str).collect();
        out.push(v(
            "bundled_purposes",
            format!("checkbox {}", names.join("+")),
            "each purpose needs its own choice",
        ));
    }
    for p in &variant.hide_notices {
        out.push(v(
            "missing_notice",
            format!("purpose {p}"),
            "every purpose must show its notice text",
        ));
    }
    for p in &variant.legitimate_interest {
        out.push(v(
            "legitimate_interest",
            format!("purpose {p}"),
            "every Candor purpose rests on consent; it cannot be presented as a legitimate interest",
        ));
    }
    if variant.close_button == CloseButton::Accept {
        out.push(v(
            "close_counts_as_consent",
            "button.close",
            "closing the prompt must not grant anything",
        ));
    }
    for (lang, texts) in &variant.texts {
        for (key, text) in texts {
            let lower = text.to_lowercase();
            if lower.contains("legitimate interest") {
                out.push(v(
                    "legitimate_interest",
                    format!("text {key} ({lang})"),
                    "wording presents consent purposes as a legitimate interest",
                ));
            }
            for f in forbidden {
                if !f.trim().is_empty() && lower.contains(&f.to_lowercase()) {
                    out.push(v(
                        "forbidden_wording",
                        format!("text {key} ({lang})"),
                        format!("contains {f:?}, which the operator forbids"),
                    ));
                }
            }
        }
    }
}

fn measured(r: &Rendered, catalog: &Catalog, out: &mut Vec<Violation>) {
    let find = |role: &str| r.first_layer.iter().find(|b| b.role == role && b.visible);
    let (accept, reject) = (find("accept"), find("reject"));
    for (role, b) in [("accept", accept), ("reject", reject)] {
        match b {
            None => out.push(v(
                "reject_not_on_first_layer",
                format!("button.{role}"),
                "not visible on the first layer as rendered",
            )),
            Some(b) if !b.in_viewport => out.push(v(
                "unequal_prominence",
                format!("button.{role}"),
                "position: not in view when the prompt opens",
            )),
            Some(_) => {}
        }
    }
    if let (Some(a), Some(j)) = (accept, reject) {
        prominence(r.surface, a, j, out);
        let order: Vec<&str> = r
            .first_layer
            .iter()
            .filter(|b| b.visible)
            .map(|b| b.role.as_str())
            .collect();
        let at = |role| order.iter().position(|x| *x == role);
        if let (Some(x), Some(y)) = (at("accept"), at("reject")) {
            if x.abs_diff(y) != 1 {
                out.push(v(
                    "unequal_prominence",
                    "button.reject",
                    "order: another control sits between accept and reject",
                ));
            }
        }
    }
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    for c in &r.choices {
        let element = format!("checkbox {}", c.purposes.join("+"));
        if c.checked {
            out.push(v(
                "pre_ticked",
                element.clone(),
                "rendered ticked before any choice",
            ));
        }
        if c.purposes.len() > 1 {
            out.push(v(
                "bundled_purposes",
                element.clone(),
                "one rendered checkbox decides several purposes",
            ));
        }
        if c.label.to_lowercase().contains("legitimate interest") {
            out.push(v(
                "legitimate_interest",
                element,
                "rendered as a legitimate interest",
            ));
        }
        covered.extend(c.purposes.iter().map(String::as_str));
    }
    for p in catalog.purposes() {
        let id = p.id.as_str();
        if !covered.contains(id) {
            out.push(v(
                "bundled_purposes",
                format!("purpose {id}"),
                "no rendered checkbox of its own",
            ));
        }
        if r.notices.get(id).is_none_or(|t| t.trim().is_empty()) {
            out.push(v(
                "missing_notice",
                format!("purpose {id}"),
                "its notice text is not visible",
            ));
        }
    }
}

/// Accept and reject must be alike in size, type, legibility, visual weight and place.
fn prominence(surface: Rgb, a: &RenderedButton, j: &RenderedButton, out: &mut Vec<Violation>) {
    let area = |b: &RenderedButton| (b.rect.w * b.rect.h).max(0.0);
    let (aa, ja) = (area(a), area(j));
    if aa.min(ja) < MIN_AREA_RATIO * aa.max(ja) {
        out.push(v(
            "unequal_prominence",
            smaller(aa, ja),
            format!("size: {:.0} px² against {:.0} px²", ja, aa),
        ));
    }
    if (a.font_size - j.font_size).abs() > 0.5 || a.font_weight.abs_diff(j.font_weight) >= 200 {
        out.push(v(
            "unequal_prominence",
            smaller(a.font_size, j.font_size),
            format!(
                "type: accept {}px/{} against reject {}px/{}",
                a.font_size, a.font_weight, j.font_size, j.font_weight
            ),
        ));
    }
    for (role, b) in [("accept", a), ("reject", j)] {
        let c = b.color.contrast(b.background);
        if c < MIN_TEXT_CONTRAST {
            out.push(v(
                "unequal_prominence",
                format!("button.{role}"),
                format!("contrast: text {c:.1}:1, below {MIN_TEXT_CONTRAST}:1"),
            ));
        }
    }
    let (aw, jw) = (
        a.background.contrast(surface),
        j.background.contrast(surface),
    );
    if aw.max(jw) > MAX_WEIGHT_FACTOR * aw.min(jw) {
        out.push(v(
            "unequal_prominence",
            smaller(aw, jw),
            format!("contrast: against the prompt, accept {aw:.1}:1 and reject {jw:.1}:1"),
        ));
    }
    let same_row = (a.rect.y - j.rect.y).abs() < a.rect.h.min(j.rect.h) / 2.0;
    let same_column = (a.rect.x - j.rect.x).abs() < 2.0 && (a.rect.w - j.rect.w).abs() < 2.0;
    if !same_row && !same_column {
        out.push(v(
            "unequal_prominence",
            "button.reject",
            "position: accept and reject are neither side by side nor stacked alike",
        ));
    }
}

/// The weaker of accept (`a`) and reject (`j`) by some measure.
fn smaller(a: f64, j: f64) -> &'static str {
    if j < a {
        "button.reject"
    } else {
        "button.accept"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purpose::tests::sample;

    fn button(role: &str, x: f64, bg: Rgb) -> RenderedButton {
        RenderedButton {
            role: role.into(),
            rect: Rect {
                x,
                y: 100.0,
                w: 120.0,
                h: 40.0,
            },
            color: Rgb(255, 255, 255),
            background: bg,
            font_size: 16.0,
            font_weight: 600,
            visible: true,
            in_viewport: true,
        }
    }

    const NAVY: Rgb = Rgb(30, 58, 138);

    fn fair() -> Rendered {
        Rendered {
            surface: Rgb(255, 255, 255),
            first_layer: vec![
                button("accept", 0.0, NAVY),
                button("reject", 130.0, NAVY),
                button("choose", 260.0, NAVY),
            ],
            choices: ["analytics", "ads_insights"]
                .iter()
                .map(|p| RenderedChoice {
                    purposes: vec![(*p).into()],
                    checked: false,
                    label: (*p).into(),
                })
                .collect(),
            notices: [("analytics", "We count."), ("ads_insights", "Totals.")]
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect(),
        }
    }

    fn rules(vs: &[Violation]) -> Vec<(&'static str, &str)> {
        vs.iter().map(|v| (v.rule, v.element.as_str())).collect()
    }

    #[test]
    fn standard_is_fair_declared_and_rendered() {
        let c = sample();
        assert_eq!(lint(&Variant::standard(), &c, &[], Some(&fair())), vec![]);
    }

    #[test]
    fn declared_dark_patterns_are_named() {
        let c = sample();
        let p = |s: &str| PurposeId::parse(s).unwrap();
        let mut bad = Variant::standard();
        bad.buttons = vec![Control::Accept, Control::Choose];
        bad.preticked = vec![p("analytics")];
        bad.bundles = vec![vec![p("analytics"), p("ads_insights")]];
        bad.hide_notices = vec![p("ads_insights")];
        bad.legitimate_interest = vec![p("analytics")];
        bad.close_button = CloseButton::Accept;
        bad.texts.insert(
            Language::english(),
            BTreeMap::from([("intro".to_owned(), "By continuing you agree.".to_owned())]),
        );
        let got = lint(&bad, &c, &["by continuing".to_owned()], None);
        assert_eq!(
            rules(&got),
            vec![
                ("bundled_purposes", "checkbox analytics+ads_insights"),
                ("close_counts_as_consent", "button.close"),
                ("forbidden_wording", "text intro (en)"),
                ("legitimate_interest", "purpose analytics"),
                ("missing_notice", "purpose ads_insights"),
                ("pre_ticked", "checkbox analytics"),
                ("reject_not_on_first_layer", "button.reject"),
            ]
        );
        let mut apart = Variant::standard();
        apart.buttons = vec![Control::Accept, Control::Choose, Control::Reject];
        assert_eq!(
            rules(&lint(&apart, &c, &[], None)),
            vec![("unequal_prominence", "button.reject")]
        );
    }

    #[test]
    fn rendered_dark_patterns_are_named() {
        let c = sample();
        let s = Variant::standard();
        let check = |f: &dyn Fn(&mut Rendered)| {
            let mut r = fair();
            f(&mut r);
            // (rule, element) pairs: several details may name the same fault
            let mut got: Vec<_> = rules(&lint(&s, &c, &[], Some(&r)))
                .into_iter()
                .map(|(a, b)| (a, b.to_owned()))
                .collect();
            got.dedup();
            got
        };
        let up = |x: &str| ("unequal_prominence", x.to_owned());
        // a smaller reject
        assert_eq!(
            check(&|r| r.first_layer[1].rect.w = 60.0),
            vec![up("button.reject")]
        );
        // a ghost reject: white on white surface, grey text
        assert_eq!(
            check(&|r| {
                r.first_layer[1].background = Rgb(255, 255, 255);
                r.first_layer[1].color = Rgb(170, 170, 170);
            }),
            vec![up("button.reject")]
        );
        // hidden by CSS
        assert_eq!(
            check(&|r| r.first_layer[1].visible = false),
            vec![("reject_not_on_first_layer", "button.reject".to_owned())]
        );
        // below the fold
        assert_eq!(
            check(&|r| r.first_layer[1].in_viewport = false),
            vec![up("button.reject")]
        );
        // moved away from accept
        assert_eq!(
            check(&|r| r.first_layer[1].rect.y = 400.0),
            vec![up("button.reject")]
        );
        // smaller type
        assert_eq!(
            check(&|r| r.first_layer[1].font_size = 11.0),
            vec![up("button.reject")]
        );
        // a rendered tick, a bundle, a missing notice
        assert_eq!(
            check(&|r| r.choices[0].checked = true),
            vec![("pre_ticked", "checkbox analytics".to_owned())]
        );
        assert_eq!(
            check(&|r| {
                r.choices = vec![RenderedChoice {
                    purposes: vec!["analytics".into(), "ads_insights".into()],
                    checked: false,
                    label: "both".into(),
                }]
            }),
            vec![(
                "bundled_purposes",
                "checkbox analytics+ads_insights".to_owned()
            )]
        );
        assert_eq!(
            check(&|r| {
                r.notices.insert("analytics".into(), " ".into());
            }),
            vec![("missing_notice", "purpose analytics".to_owned())]
        );
    }

    #[test]
    fn assignment_is_stable_and_follows_weights() {
        let mut a = Variant::standard();
        a.weight = 3;
        let mut b = Variant::standard();
        b.id = VariantId::parse("b").unwrap();
        b.weight = 1;
        let list = [a, b];
        let mut to_b = 0;
        for i in 0..4000 {
            let unit = format!("anon-{i}");
            let first = assign(&list, &unit).unwrap();
            assert_eq!(assign(&list, &unit).unwrap().id, first.id);
            if first.id.as_str() == "b" {
                to_b += 1;
            }
        }
        // 1 in 4 expected: 1000 ± 5 standard deviations (27)
        assert!((865..=1135).contains(&to_b), "{to_b}");
        assert!(assign(&[], "x").is_none());
    }

    #[test]
    fn contrast_matches_wcag() {
        let white = Rgb(255, 255, 255);
        let black = Rgb(0, 0, 0);
        assert!((white.contrast(black) - 21.0).abs() < 1e-9);
        assert!((white.contrast(white) - 1.0).abs() < 1e-9);
        // #767676 on white is the classic 4.54:1
        assert!((Rgb(0x76, 0x76, 0x76).contrast(white) - 4.54).abs() < 0.01);
    }
}
