//! `candor erase`: kill -9 in the middle of a `--from-file` erasure leaves every subject
//! either fully erased or fully intact, and running the same file again finishes it.

use crate::helpers::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// Per subject: events held, and whether the ledger has its erasure record.
fn state(data: &Data) -> BTreeMap<String, (usize, bool)> {
    let mut out: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    for l in export(data) {
        let s = l["subject"].as_str().unwrap().to_owned();
        let e = out.entry(s).or_default();
        match l["kind"].as_str().unwrap() {
            "event" => e.0 += 1,
            _ if l["status"] == "erased" => e.1 = true,
            _ => {}
        }
    }
    out
}

#[test]
fn kill_9_during_an_erasure_leaves_each_subject_whole_or_gone() {
    for data in both() {
        erase_kill9(&data);
    }
}

fn erase_kill9(data: &Data) {
    // The demo seeds subjects with events; stop it gracefully, then erase offline.
    start(data, 40).stop();
    let before = state(data);
    let subjects: Vec<String> = before
        .iter()
        .filter(|(_, (events, _))| *events > 0)
        .map(|(s, _)| s.clone())
        .collect();
    assert!(
        subjects.len() >= 10,
        "{}: {} subjects with events",
        data.backend(),
        subjects.len()
    );
    let file = data.path().join("erase.txt");
    std::fs::write(&file, subjects.join("\n") + "\nnot-a-subject\n").unwrap();

    // Kill it once it has reported its first erasure (it may be in the middle of the
    // next one, or have finished: either way nothing may be half done).
    let mut child = bin()
        .args(["erase", "--from-file", file.to_str().unwrap()])
        .args(data.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a report line").unwrap();
    assert!(first.starts_with("line 1: erased "), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();

    let after = state(data);
    let mut erased = BTreeSet::new();
    for s in &subjects {
        let (events, record) = after.get(s).copied().unwrap_or_default();
        if record {
            assert_eq!(
                events,
                0,
                "{}: {s} erased but events remain",
                data.backend()
            );
            erased.insert(s.clone());
        } else {
            assert_eq!(events, before[s].0, "{}: {s} half erased", data.backend());
        }
    }
    assert!(erased.contains(&subjects[0]));
    let verify = run(&["ledger", "verify"], data);
    assert!(verify.status.success(), "{}", stdout(&verify));

    // The same file again: what is left is erased, what was erased is named as gone,
    // the bad line is named, and the exit status says something failed.
    let again = run(&["erase", "--from-file", file.to_str().unwrap()], data);
    let text = stdout(&again);
    assert!(!again.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "line {}: FAILED: not a subject id",
            subjects.len() + 1
        )),
        "{text}"
    );
    for (i, s) in subjects.iter().enumerate() {
        let line = format!("line {}: ", i + 1);
        let l = text.lines().find(|l| l.starts_with(&line)).unwrap();
        if erased.contains(s) {
            assert!(l.contains("no such subject"), "{l}");
        } else {
            assert!(l.contains(&format!("erased {s}")), "{l}");
        }
    }
    let done = state(data);
    for s in &subjects {
        let (events, record) = done.get(s).copied().unwrap_or_default();
        assert!(record && events == 0, "{}: {s} not erased", data.backend());
    }
    let verify = run(&["ledger", "verify"], data);
    assert!(verify.status.success(), "{}", stdout(&verify));
    // --subject on an erased subject: refused, exit status 1.
    let once_more = run(&["erase", "--subject", &subjects[0]], data);
    assert!(!once_more.status.success());
    assert!(stdout(&once_more).contains("no such subject"));
}
