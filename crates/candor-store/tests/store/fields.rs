//! Volunteered (zero-party) fields: set, edit and remove one at a time, sealed under the
//! subject's key, refused for a subject that does not exist.

use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::Action;
use candor_core::field::{FieldName, Provenance};
use candor_core::{Sensitive, SubjectId, UnixMillis};
use candor_store::{FieldWrite, Store, StoreError};

fn write(subject: SubjectId, field: &str, value: &str, provenance: Provenance) -> FieldWrite {
    FieldWrite {
        subject,
        field: FieldName::parse(field).unwrap(),
        value: Sensitive::new(value.to_owned()),
        provenance,
        time_ms: UnixMillis(now()),
    }
}

async fn subject(store: &dyn Store, user: &str) -> SubjectId {
    store
        .apply_consent(command(store, user, &[("personalization", Action::Grant)]))
        .await
        .unwrap()
        .subject
}

/// (field, value, provenance) of what the store holds for `s`.
async fn held(store: &dyn Store, s: SubjectId) -> Vec<(String, String, Provenance)> {
    store
        .fields(s)
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.field.as_str().to_owned(),
                f.value.expose().clone(),
                f.provenance,
            )
        })
        .collect()
}

pub async fn fields_set_edit_remove_one_by_one(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let ann = subject(s, "ann").await;
    let bob = subject(s, "bob").await;
    assert!(s.fields(ann).await.unwrap().is_empty());

    s.set_field(write(ann, "shoe_size", "42", Provenance::Volunteered))
        .await
        .unwrap();
    s.set_field(write(
        ann,
        "interests",
        "running,yoga",
        Provenance::Observed,
    ))
    .await
    .unwrap();
    s.set_field(write(bob, "shoe_size", "39", Provenance::Inferred))
        .await
        .unwrap();
    let v = Provenance::Volunteered;
    let o = Provenance::Observed;
    assert_eq!(
        held(s, ann).await,
        vec![
            ("interests".into(), "running,yoga".into(), o),
            ("shoe_size".into(), "42".into(), v),
        ]
    );

    // An edit replaces the value and the provenance, and touches nothing else.
    s.set_field(write(ann, "interests", "yoga", v))
        .await
        .unwrap();
    assert_eq!(
        held(s, ann).await,
        vec![
            ("interests".into(), "yoga".into(), v),
            ("shoe_size".into(), "42".into(), v),
        ]
    );

    // Removal is one field at a time, and says whether there was one.
    let shoe = FieldName::parse("shoe_size").unwrap();
    assert!(s.remove_field(ann, &shoe).await.unwrap());
    assert!(!s.remove_field(ann, &shoe).await.unwrap());
    assert_eq!(
        held(s, ann).await,
        vec![("interests".into(), "yoga".into(), v)]
    );
    assert_eq!(
        held(s, bob).await,
        vec![("shoe_size".into(), "39".into(), Provenance::Inferred)],
        "another subject's fields are their own"
    );

    // Durable: a reopened store reads the same.
    s.shutdown().await;
    drop(store);
    let again = b.open().await;
    assert_eq!(
        held(&*again, ann).await,
        vec![("interests".into(), "yoga".into(), v)]
    );
    again.shutdown().await;
}

pub async fn field_values_are_sealed(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let ann = subject(s, "ann").await;
    let secret = "Zanzibar-Quokka-7731";
    s.set_field(write(
        ann,
        "favourite_place",
        secret,
        Provenance::Volunteered,
    ))
    .await
    .unwrap();
    assert_eq!(s.fields(ann).await.unwrap()[0].value.expose(), secret);
    let bytes = b.raw_field_bytes().await;
    assert!(!bytes.is_empty(), "the backend's bytes were read");
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the value is in the clear in what the database holds"
    );
    assert!(
        bytes.windows(15).any(|w| w == b"favourite_place"),
        "the field's name is not secret, and finding it shows the search works"
    );
    // Debug output of what crosses the interface never shows it either.
    assert!(!format!("{:?}", s.fields(ann).await.unwrap()).contains("Zanzibar"));
    s.shutdown().await;
}

pub async fn fields_of_an_unknown_subject_are_refused(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let nobody = SubjectId::random();
    let err = s
        .set_field(write(nobody, "shoe_size", "42", Provenance::Volunteered))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownSubject), "{err}");
    assert!(s.fields(nobody).await.unwrap().is_empty());
    // Many at once are all or nothing: a known subject's write beside an unknown one's
    // is not applied either.
    let ann = subject(s, "ann").await;
    let err = s
        .set_fields(vec![
            write(ann, "shoe_size", "42", Provenance::Volunteered),
            write(nobody, "shoe_size", "42", Provenance::Volunteered),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownSubject), "{err}");
    assert!(s.fields(ann).await.unwrap().is_empty());
    s.set_fields(vec![
        write(ann, "shoe_size", "42", Provenance::Volunteered),
        write(ann, "birthday_month", "3", Provenance::Observed),
    ])
    .await
    .unwrap();
    assert_eq!(s.fields(ann).await.unwrap().len(), 2);
    assert!(!s
        .remove_field(nobody, &FieldName::parse("shoe_size").unwrap())
        .await
        .unwrap());
    s.shutdown().await;
}

pub async fn every_subjects_fields_page_in_order(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let mut expected = Vec::new();
    for user in ["ann", "bob", "cyd"] {
        let subject = subject(s, user).await;
        for (field, value) in [("interests", "running"), ("shoe_size", "40")] {
            s.set_field(write(subject, field, value, Provenance::Volunteered))
                .await
                .unwrap();
            expected.push((subject, field.to_owned(), value.to_owned()));
        }
    }
    expected.sort();
    // Pages of two split subjects in the middle; nothing is lost or repeated.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.fields_page(after.clone(), 3).await.unwrap();
        let Some((last_s, last_f)) = page.last() else {
            break;
        };
        after = Some((*last_s, last_f.field.clone()));
        seen.extend(
            page.into_iter()
                .map(|(sub, f)| (sub, f.field.as_str().to_owned(), f.value.expose().clone())),
        );
    }
    assert_eq!(seen, expected);
    store.shutdown().await;
}
