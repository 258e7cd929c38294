//! Email on consent in the store (issue 16): a subscription changes only with the
//! ledger record that proves it, a stale confirmation confirms nothing, leaving one list
//! leaves only that one and suppresses the address for it, the send queue holds a
//! subscriber once per campaign and lets one sender move a message on, and erasure
//! takes a person's subscriptions and messages while the suppression list keeps only
//! the address's keyed hash.

use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::{Action, Channel, ConsentStatus};
use candor_core::crypto::IdKind;
use candor_core::ledger::{Actor, LIST_PURPOSE};
use candor_core::{Sensitive, SubjectId, UnixMillis};
use candor_store::email::*;
use candor_store::{ConsentCommand, Identity, Store, StoreError};

fn address(a: &str) -> Identity {
    Identity {
        kind: IdKind::Email,
        hash: master().lookup_hash(IdKind::Email, a),
        value: Sensitive::new(a.to_owned()),
    }
}

fn list_cmd(store: &dyn Store, addr: &str, list: &str, action: ListAction) -> ConsentCommand {
    let mut cmd = command(store, "unused", &[]);
    cmd.identities = vec![address(addr)];
    cmd.actor = Actor::EmailLink;
    cmd.channel = match action {
        ListAction::Leave { .. } => Channel::Unsubscribe,
        _ => Channel::EmailConfirmation,
    };
    cmd.evidence = Default::default();
    cmd.list = Some(ListChange {
        list: list.into(),
        notice_version: 3,
        notice_hash: [7; 32],
        action,
    });
    cmd
}

fn request() -> ListAction {
    ListAction::Request {
        window_ms: 3_600_000,
        max: 2,
    }
}

fn confirm(origin: Option<&str>) -> ListAction {
    ListAction::Confirm {
        confirmation: "c-1".into(),
        origin: origin.map(|o| o.as_bytes().to_vec()),
    }
}

async fn head_seq(store: &dyn Store) -> u64 {
    store.ledger_head().await.unwrap().map_or(0, |h| h.seq)
}

async fn status(store: &dyn Store, s: SubjectId, list: &str) -> Option<SubStatus> {
    store
        .email()
        .subscriptions(s)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.list == list)
        .map(|x| x.status)
}

pub async fn double_opt_in_is_recorded_once_and_only_when_pending(b: &dyn Backend) {
    let store = b.open().await;
    let st = &*store;
    let a = "ann@example.test";
    // Asking: a pending row, no ledger record, confirmations rate limited.
    let before = head_seq(st).await;
    let out = st
        .apply_consent(list_cmd(st, a, "news", request()))
        .await
        .unwrap();
    let s = out.subject;
    assert!(out.created);
    let l = out.list.unwrap();
    assert_eq!((l.before, l.after), (None, SubStatus::Pending));
    assert!(l.send_confirmation);
    assert_eq!(head_seq(st).await, before, "a request records nothing");
    let second = st
        .apply_consent(list_cmd(st, a, "news", request()))
        .await
        .unwrap();
    assert!(second.list.unwrap().send_confirmation);
    let third = st
        .apply_consent(list_cmd(st, a, "news", request()))
        .await
        .unwrap();
    assert!(
        !third.list.unwrap().send_confirmation,
        "at most two confirmation mails per window"
    );
    assert_eq!(third.subject, s);
    assert_eq!(status(st, s, "news").await, Some(SubStatus::Pending));

    // Confirming (with the purpose granted in the same command): one marker record
    // with the list, the confirmation id and the origin's digest; the origin sealed.
    let mut cmd = list_cmd(st, a, "news", confirm(Some("203.0.113.9 Firefox")));
    cmd.changes = vec![change(st, "personalization", Action::Grant)];
    let out = st.apply_consent(cmd).await.unwrap();
    let l = out.list.unwrap();
    assert_eq!(
        (l.before, l.after),
        (Some(SubStatus::Pending), SubStatus::Confirmed)
    );
    assert_eq!(out.records.len(), 1, "the purpose's own record");
    let history = st.consent_history(s).await.unwrap();
    let marker: Vec<_> = history
        .iter()
        .filter(|r| r.entry.purpose.as_str() == LIST_PURPOSE)
        .collect();
    assert_eq!(marker.len(), 1);
    let m = &marker[0].entry;
    assert_eq!(Some(m.seq), l.recorded);
    assert_eq!(m.status, ConsentStatus::Given);
    assert_eq!(m.channel, Channel::EmailConfirmation);
    assert_eq!((m.notice_version, m.notice_hash), (3, [7; 32]));
    let ev = m.evidence.entries();
    assert_eq!(ev.get("list").map(String::as_str), Some("news"));
    assert_eq!(ev.get("confirmation").map(String::as_str), Some("c-1"));
    let digest = ev.get("origin").expect("the origin's digest").clone();
    assert_eq!(digest.len(), 32);
    // Hex, so it can hold "203" by chance but never the address with its dots.
    assert!(
        digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "only a digest"
    );
    assert!(!digest.contains("203.0.113"), "only a digest");
    let sub = st.email().subscriptions(s).await.unwrap().remove(0);
    assert_eq!(sub.status, SubStatus::Confirmed);
    let sealed = sub.origin.expect("origin kept sealed");
    assert!(!String::from_utf8_lossy(&sealed).contains("203.0.113.9"));
    let key = st.subject_key(s).await.unwrap().unwrap();
    assert_eq!(
        candor_store::seal::open_origin(&key, s, "news", &sealed).unwrap(),
        b"203.0.113.9 Firefox"
    );
    // The purpose state is the purpose's record, not the marker.
    let state = st.consent_state(s).await.unwrap();
    assert!(state.iter().all(|r| r.purpose.as_str() != LIST_PURPOSE));
    assert!(st
        .index()
        .granted(&s)
        .contains(bits(st, &["personalization"]).iter().next().unwrap()));

    // Following the link again records nothing more.
    let seq = head_seq(st).await;
    let again = st
        .apply_consent(list_cmd(st, a, "news", confirm(None)))
        .await
        .unwrap();
    assert_eq!(again.list.unwrap().recorded, None);
    assert_eq!(head_seq(st).await, seq);

    // Leaving: a withdrawn marker, the address suppressed for that list only.
    let out = st
        .apply_consent(list_cmd(
            st,
            a,
            "news",
            ListAction::Leave { campaign: None },
        ))
        .await
        .unwrap();
    assert_eq!(out.list.as_ref().unwrap().after, SubStatus::Unsubscribed);
    let left = st.consent_history(s).await.unwrap();
    let last = &left.last().unwrap().entry;
    assert_eq!(
        (last.purpose.as_str(), last.status, last.channel),
        (LIST_PURPOSE, ConsentStatus::Withdrawn, Channel::Unsubscribe)
    );
    let hash = address(a).hash;
    let sup = st.email().suppressions_of(hash).await.unwrap();
    assert_eq!(sup.len(), 1);
    assert_eq!(
        (sup[0].list.as_str(), sup[0].reason),
        ("news", SuppressReason::Unsubscribe)
    );
    // Leaving twice records once.
    let seq = head_seq(st).await;
    st.apply_consent(list_cmd(
        st,
        a,
        "news",
        ListAction::Leave { campaign: None },
    ))
    .await
    .unwrap();
    assert_eq!(head_seq(st).await, seq);

    // An old confirmation link after leaving confirms nothing, and nothing of its
    // command applies (the purpose change with it is refused too).
    let mut stale = list_cmd(st, a, "news", confirm(None));
    stale.changes = vec![change(st, "analytics", Action::Grant)];
    let err = st.apply_consent(stale).await.unwrap_err();
    assert!(matches!(err, StoreError::NotPending { .. }), "{err:?}");
    assert_eq!(head_seq(st).await, seq);
    assert_eq!(status(st, s, "news").await, Some(SubStatus::Unsubscribed));
    assert!(!st
        .index()
        .granted(&s)
        .contains(bits(st, &["analytics"]).iter().next().unwrap()));

    // Joining again is a new double opt-in, and its confirmation lifts the suppression.
    st.apply_consent(list_cmd(st, a, "news", request()))
        .await
        .unwrap();
    st.apply_consent(list_cmd(st, a, "news", confirm(None)))
        .await
        .unwrap();
    assert_eq!(status(st, s, "news").await, Some(SubStatus::Confirmed));
    assert!(st.email().suppressions_of(hash).await.unwrap().is_empty());
    // A confirmation for a list never asked for is refused.
    let err = st
        .apply_consent(list_cmd(st, a, "other", confirm(None)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotPending { .. }), "{err:?}");
}

pub async fn leaving_one_list_leaves_only_that_one(b: &dyn Backend) {
    let store = b.open().await;
    let st = &*store;
    let a = "bob@example.test";
    for list in ["news", "offers"] {
        st.apply_consent(list_cmd(st, a, list, request()))
            .await
            .unwrap();
        let mut c = list_cmd(st, a, list, confirm(None));
        c.changes = vec![change(st, "personalization", Action::Grant)];
        st.apply_consent(c).await.unwrap();
    }
    let s = st
        .apply_consent(list_cmd(
            st,
            a,
            "offers",
            ListAction::Leave { campaign: None },
        ))
        .await
        .unwrap()
        .subject;
    assert_eq!(status(st, s, "news").await, Some(SubStatus::Confirmed));
    assert_eq!(status(st, s, "offers").await, Some(SubStatus::Unsubscribed));
    let p = bits(st, &["personalization"]).iter().next().unwrap();
    assert!(
        st.index().granted(&s).contains(p),
        "the purpose stays given"
    );
    let counts = st.email().list_counts().await.unwrap();
    let news = counts.iter().find(|c| c.list == "news").unwrap();
    let offers = counts.iter().find(|c| c.list == "offers").unwrap();
    assert_eq!((news.confirmed, news.unsubscribed), (1, 0));
    assert_eq!((offers.confirmed, offers.unsubscribed), (0, 1));
    // Members page in subject order; pending requests expire.
    let mut members = Vec::new();
    for i in 0..5 {
        let addr = format!("m{i}@example.test");
        st.apply_consent(list_cmd(st, &addr, "news", request()))
            .await
            .unwrap();
        st.apply_consent(list_cmd(st, &addr, "news", confirm(None)))
            .await
            .unwrap();
    }
    let mut after = None;
    loop {
        let page = st.email().list_members("news", after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        members.extend(page);
    }
    assert_eq!(members.len(), 6);
    assert!(members.windows(2).all(|w| w[0] < w[1]));
    st.apply_consent(list_cmd(st, "late@example.test", "news", request()))
        .await
        .unwrap();
    let late = st.resolve(&address("late@example.test").hash).unwrap();
    assert_eq!(
        st.email().expire_pending(now() - 60_000).await.unwrap(),
        vec![]
    );
    assert_eq!(
        st.email().expire_pending(now() + 1).await.unwrap(),
        vec![late]
    );
}

/// What is left of a request that expired unconfirmed is erased only when the subject
/// was made for it; a subscriber, an account or anyone who ever consented stays whole.
pub async fn an_expired_request_forgets_only_an_abandoned_subject(b: &dyn Backend) {
    let store = b.open().await;
    let st = &*store;
    let ask = |addr: &'static str, list: &'static str| {
        let cmd = list_cmd(st, addr, list, request());
        async move { st.apply_consent(cmd).await.unwrap().subject }
    };
    // Asked once, never confirmed: nothing else of theirs exists.
    let alone = ask("alone@example.test", "news").await;
    // Confirmed on news, then asked for offers and never confirmed.
    let member = ask("member@example.test", "news").await;
    st.apply_consent(list_cmd(st, "member@example.test", "news", confirm(None)))
        .await
        .unwrap();
    assert_eq!(ask("member@example.test", "offers").await, member);
    // An account (a user id beside the address) that asked and never confirmed.
    let mut cmd = list_cmd(st, "account@example.test", "news", request());
    cmd.identities.push(identity("account-17"));
    let account = st.apply_consent(cmd).await.unwrap().subject;
    assert_eq!(
        st.email().subscriptions(alone).await.unwrap()[0].status,
        SubStatus::Pending
    );
    let head = head_seq(st).await;

    let mut expired = st.email().expire_pending(now() + 1).await.unwrap();
    expired.sort();
    let mut want = vec![alone, member, account];
    want.sort();
    assert_eq!(expired, want);
    let forget = |s: SubjectId| {
        let mut e = crate::erasure::erasure(s);
        e.actor = Actor::Retention;
        e.channel = Channel::EmailConfirmation;
        e.only_if_abandoned = true;
        st.erase(e)
    };
    // The member and the account are not abandoned: refused, nothing changed.
    for s in [member, account] {
        assert!(matches!(forget(s).await, Err(StoreError::NotAbandoned)));
        assert!(st.subject_key(s).await.unwrap().is_some());
    }
    assert_eq!(status(st, member, "news").await, Some(SubStatus::Confirmed));
    assert_eq!(status(st, member, "offers").await, None);
    assert_eq!(head_seq(st).await, head);
    // The one made for the request is erased, the erasure recorded by who did it.
    let out = forget(alone).await.unwrap();
    assert_eq!(out.deleted.identities, 1);
    let rec = &out.record.entry;
    assert_eq!(rec.seq, head + 1);
    assert_eq!(rec.attribution.as_ref().unwrap().actor, Actor::Retention);
    assert!(st.subject_key(alone).await.unwrap().is_none());
    assert_eq!(st.resolve(&address("alone@example.test").hash), None);
    assert!(matches!(
        forget(alone).await,
        Err(StoreError::UnknownSubject)
    ));
    // The same address asking again is a new person with a new request.
    let again = ask("alone@example.test", "news").await;
    assert_ne!(again, alone);
    assert_eq!(status(st, again, "news").await, Some(SubStatus::Pending));
}

pub async fn the_queue_holds_each_subscriber_once(b: &dyn Backend) {
    let store = b.open().await;
    let st = &*store;
    let e = st.email();
    let id = e
        .create_campaign(NewCampaign {
            name: "Spring".into(),
            list: "news".into(),
            segment: None,
            subject_line: "Hello {{ name }}".into(),
            text_body: "Hi".into(),
            html_body: Some("<p>Hi</p>".into()),
            created_ms: now(),
        })
        .await
        .unwrap();
    let c = e.campaign(id).await.unwrap().unwrap();
    assert_eq!(c.status, CampaignStatus::Draft);
    assert_eq!(e.campaigns().await.unwrap().len(), 1);
    assert_eq!(e.campaigns().await.unwrap()[0].name, "Spring");
    assert!(e
        .set_campaign_status(
            id,
            CampaignStatus::Draft,
            CampaignStatus::Sending,
            UnixMillis(now())
        )
        .await
        .unwrap());
    assert!(!e
        .set_campaign_status(
            id,
            CampaignStatus::Draft,
            CampaignStatus::Sending,
            UnixMillis(now())
        )
        .await
        .unwrap());
    let c = e.campaign(id).await.unwrap().unwrap();
    assert_eq!(c.status, CampaignStatus::Sending);
    assert!(c.started_ms.is_some());

    let subjects: Vec<SubjectId> = (0..3).map(|_| SubjectId::random()).collect();
    let t = UnixMillis(now());
    // A draft's queued messages are not due: it is still being queued.
    let draft = e
        .create_campaign(NewCampaign {
            name: "Later".into(),
            list: "news".into(),
            segment: None,
            subject_line: "s".into(),
            text_body: "t".into(),
            html_body: None,
            created_ms: now(),
        })
        .await
        .unwrap();
    assert_eq!(e.enqueue(draft, subjects.clone(), t).await.unwrap(), 3);
    assert!(e
        .due_messages(UnixMillis(now() + 1), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(e.enqueue(id, subjects.clone(), t).await.unwrap(), 3);
    assert_eq!(
        e.enqueue(id, subjects.clone(), t).await.unwrap(),
        0,
        "never twice"
    );
    assert_eq!(e.open_messages(id).await.unwrap(), 3);
    let due = e.due_messages(UnixMillis(now() + 1), 10).await.unwrap();
    assert_eq!(due.len(), 3);
    assert!(e
        .due_messages(UnixMillis(t.0 - 1), 10)
        .await
        .unwrap()
        .is_empty());

    let upd = |s: SubjectId, from, to| MessageUpdate {
        campaign: id,
        subject: s,
        from,
        to,
        attempts: 1,
        next_ms: now(),
        detail: None,
        at: UnixMillis(now()),
    };
    // One sender moves a message to committing; a second attempt finds it moved.
    let moved = e
        .update_messages(vec![
            upd(
                subjects[0],
                MessageStatus::Queued,
                MessageStatus::Committing,
            ),
            upd(subjects[1], MessageStatus::Queued, MessageStatus::Skipped),
        ])
        .await
        .unwrap();
    assert_eq!(moved, vec![true, true]);
    let again = e
        .update_messages(vec![upd(
            subjects[0],
            MessageStatus::Queued,
            MessageStatus::Committing,
        )])
        .await
        .unwrap();
    assert_eq!(again, vec![false]);
    e.update_messages(vec![upd(
        subjects[0],
        MessageStatus::Committing,
        MessageStatus::Sent,
    )])
    .await
    .unwrap();
    let counts = e.campaign_counts().await.unwrap();
    assert_eq!(counts.len(), 2);
    let c = counts.iter().find(|c| c.campaign == id).unwrap();
    assert_eq!(
        (
            c.get(MessageStatus::Sent),
            c.get(MessageStatus::Skipped),
            c.get(MessageStatus::Queued)
        ),
        (1, 1, 1)
    );
    assert_eq!(e.open_messages(id).await.unwrap(), 1);
    let all = e.campaign_messages(id, None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    // Suppressions: one per address and list, the first reason kept.
    let h = address("x@example.test").hash;
    let sup = |reason| Suppression {
        address: h,
        list: EVERY_LIST.into(),
        reason,
        created_ms: now(),
    };
    assert!(e.suppress(sup(SuppressReason::Bounce)).await.unwrap());
    assert!(!e.suppress(sup(SuppressReason::Complaint)).await.unwrap());
    assert_eq!(
        e.suppression_counts().await.unwrap(),
        vec![(SuppressReason::Bounce, 1)]
    );
}

pub async fn erasure_takes_subscriptions_and_messages(b: &dyn Backend) {
    let store = b.open().await;
    let st = &*store;
    let a = "erin@example.test";
    st.apply_consent(list_cmd(st, a, "news", request()))
        .await
        .unwrap();
    let s = st
        .apply_consent(list_cmd(
            st,
            a,
            "news",
            confirm(Some("198.51.100.1 Safari")),
        ))
        .await
        .unwrap()
        .subject;
    let id = st
        .email()
        .create_campaign(NewCampaign {
            name: "c".into(),
            list: "news".into(),
            segment: None,
            subject_line: "s".into(),
            text_body: "t".into(),
            html_body: None,
            created_ms: now(),
        })
        .await
        .unwrap();
    st.email()
        .enqueue(id, vec![s], UnixMillis(now()))
        .await
        .unwrap();
    // Left through the campaign's link: the record names it, the campaign counts it.
    let left = st
        .apply_consent(list_cmd(
            st,
            a,
            "news",
            ListAction::Leave { campaign: Some(id) },
        ))
        .await
        .unwrap();
    let seq = left.list.unwrap().recorded.unwrap();
    let rec = st.consent_history(s).await.unwrap();
    let rec = rec.iter().find(|r| r.entry.seq == seq).unwrap();
    assert_eq!(
        rec.entry.evidence.entries().get("campaign"),
        Some(&id.to_string())
    );
    let counts = st.email().campaign_counts().await.unwrap();
    assert_eq!(counts[0].unsubscribed, 1);
    // Leaving again changes nothing and counts nothing twice.
    st.apply_consent(list_cmd(
        st,
        a,
        "news",
        ListAction::Leave { campaign: Some(id) },
    ))
    .await
    .unwrap();
    assert_eq!(
        st.email().campaign_counts().await.unwrap()[0].unsubscribed,
        1
    );
    let out = st.erase(crate::erasure::erasure(s)).await.unwrap();
    assert_eq!(out.deleted.email_subscriptions, 1);
    assert_eq!(out.deleted.email_messages, 1);
    assert!(st.email().subscriptions(s).await.unwrap().is_empty());
    assert!(st
        .email()
        .campaign_messages(id, None, 10)
        .await
        .unwrap()
        .is_empty());
    // The suppression outlives the person, by keyed hash only.
    let sup = st.email().suppressions_of(address(a).hash).await.unwrap();
    assert_eq!(sup.len(), 1);
    assert_eq!(st.email().list_counts().await.unwrap().len(), 0);
}

/// The dashboard's growth figures: each list's confirmations and departures per UTC
/// day since a moment, and how many subscriptions were ever confirmed.
pub async fn list_activity_counts_confirmations_and_departures_by_day(b: &dyn Backend) {
    let store = b.open().await;
    let st = &*store;
    const DAY: i64 = 86_400_000;
    let d0 = 20_000; // 2024-10-04
    let at = |day: i64, hour: i64| day * DAY + hour * 3_600_000;
    let run = |addr: &str, list: &str, action: ListAction, t: i64| {
        let mut cmd = list_cmd(st, addr, list, action);
        cmd.time_ms = UnixMillis(t);
        cmd
    };
    // Day 0: a, b and c ask for news; a and b confirm. d asks for offers.
    for a in ["a@example.test", "b@example.test", "c@example.test"] {
        st.apply_consent(run(a, "news", request(), at(d0, 1)))
            .await
            .unwrap();
    }
    st.apply_consent(run("d@example.test", "offers", request(), at(d0, 1)))
        .await
        .unwrap();
    for a in ["a@example.test", "b@example.test"] {
        st.apply_consent(run(a, "news", confirm(None), at(d0, 2)))
            .await
            .unwrap();
    }
    // Day 1, last hour: c confirms. Day 2, first hour: b leaves; d leaves offers
    // unconfirmed.
    st.apply_consent(run("c@example.test", "news", confirm(None), at(d0 + 1, 23)))
        .await
        .unwrap();
    st.apply_consent(run(
        "b@example.test",
        "news",
        ListAction::Leave { campaign: None },
        at(d0 + 2, 0),
    ))
    .await
    .unwrap();
    st.apply_consent(run(
        "d@example.test",
        "offers",
        ListAction::Leave { campaign: None },
        at(d0 + 2, 5),
    ))
    .await
    .unwrap();

    let day = |list: &str, day: i64, confirmed: i64, left: i64| ListDay {
        list: list.into(),
        day,
        confirmed,
        left,
    };
    let email = st.email();
    assert_eq!(
        email.list_activity(at(d0, 0)).await.unwrap(),
        vec![
            day("news", d0, 2, 0),
            day("news", d0 + 1, 1, 0),
            day("news", d0 + 2, 0, 1),
            day("offers", d0 + 2, 0, 1),
        ],
        "b's confirmation stays on day 0 though b left on day 2"
    );
    // From a moment inside a day: only what happened at or after it.
    assert_eq!(
        email.list_activity(at(d0 + 1, 23)).await.unwrap(),
        vec![
            day("news", d0 + 1, 1, 0),
            day("news", d0 + 2, 0, 1),
            day("offers", d0 + 2, 0, 1),
        ]
    );
    assert_eq!(
        email.list_activity(at(d0 + 2, 1)).await.unwrap(),
        vec![day("offers", d0 + 2, 0, 1)]
    );
    assert!(email.list_activity(at(d0 + 3, 0)).await.unwrap().is_empty());

    let counts = email.list_counts().await.unwrap();
    let news = counts.iter().find(|c| c.list == "news").unwrap();
    assert_eq!(
        (
            news.pending,
            news.confirmed,
            news.unsubscribed,
            news.ever_confirmed
        ),
        (0, 2, 1, 3),
        "b confirmed, then left: still ever confirmed"
    );
    let offers = counts.iter().find(|c| c.list == "offers").unwrap();
    assert_eq!(
        (offers.unsubscribed, offers.ever_confirmed),
        (1, 0),
        "d left without confirming"
    );
}
