//! One contract suite for the storage ports, run against both adapters: embedded (temp
//! dir) and AWS (moto).

use bytes::Bytes;
use mailroom_app::Ports;
use mailroom_store::{Cond, Key, MailSender, PutOutcome, Query, SkCond, StoreError, TransactOp, Update};
use mailroom_tests::AwsStack;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

async fn blob_put_if_absent(p: Ports) {
    let b = &p.blobs;
    assert!(!b.exists("raw/a@b.example/2024/03/04/x.eml").await.unwrap());
    assert_eq!(b.get("raw/a@b.example/2024/03/04/x.eml").await.unwrap(), None);
    let o = b
        .put_if_absent("raw/a@b.example/2024/03/04/x.eml", Bytes::from_static(b"first"), "message/rfc822")
        .await
        .unwrap();
    assert_eq!(o, PutOutcome::Created);
    let o = b
        .put_if_absent("raw/a@b.example/2024/03/04/x.eml", Bytes::from_static(b"second"), "message/rfc822")
        .await
        .unwrap();
    assert_eq!(o, PutOutcome::AlreadyExists);
    assert_eq!(b.get("raw/a@b.example/2024/03/04/x.eml").await.unwrap().as_deref(), Some(&b"first"[..]));
    assert!(b.exists("raw/a@b.example/2024/03/04/x.eml").await.unwrap());
    let big = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    b.put_if_absent("big/obj", big.clone(), "application/octet-stream").await.unwrap();
    assert_eq!(b.get("big/obj").await.unwrap().unwrap().len(), big.len());
}

fn item(pk: &str, sk: &str, extra: serde_json::Value) -> mailroom_store::Item {
    let mut i = Key::new(pk, sk).item();
    if let serde_json::Value::Object(m) = extra {
        i.extend(m);
    }
    i
}

async fn table_conditional_writes(p: Ports) {
    let t = &p.table;
    let k = Key::new("c#1", "a");
    t.put(item("c#1", "a", json!({"v": 1, "name": "x"})), Some(Cond::NotExists)).await.unwrap();
    // A second create loses.
    let e = t.put(item("c#1", "a", json!({"v": 2})), Some(Cond::NotExists)).await.unwrap_err();
    assert!(matches!(e, StoreError::ConditionFailed), "{e:?}");
    assert_eq!(t.get(&k).await.unwrap().unwrap()["v"], json!(1));
    // Optimistic update on a version attribute.
    let after = t
        .update(
            &k,
            vec![Update::Set("v".into(), json!(2)), Update::Add("n".into(), 5)],
            Some(Cond::Eq("v".into(), json!(1))),
        )
        .await
        .unwrap();
    assert_eq!(after["v"], json!(2));
    assert_eq!(after["n"], json!(5));
    assert_eq!(after["name"], json!("x"));
    let e = t
        .update(&k, vec![Update::Set("v".into(), json!(3))], Some(Cond::Eq("v".into(), json!(1))))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::ConditionFailed), "{e:?}");
    let after = t
        .update(
            &k,
            vec![
                Update::SetIfAbsent("name".into(), json!("ignored")),
                Update::SetIfAbsent("fresh".into(), json!(true)),
                Update::Append("list".into(), vec![json!("a")]),
                Update::Remove("n".into()),
            ],
            Some(Cond::And(vec![
                Cond::Exists,
                Cond::Lt("v".into(), json!(10)),
                Cond::AttrNotExists("list".into()),
            ])),
        )
        .await
        .unwrap();
    assert_eq!(after["name"], json!("x"));
    assert_eq!(after["fresh"], json!(true));
    assert_eq!(after["list"], json!(["a"]));
    assert!(!after.contains_key("n"));
    // Update of a missing item creates it unless the condition says it must exist.
    let e = t
        .update(&Key::new("c#missing", "a"), vec![Update::Add("n".into(), 1)], Some(Cond::Exists))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::ConditionFailed), "{e:?}");
    let created = t.update(&Key::new("c#new", "a"), vec![Update::Add("n".into(), 1)], None).await.unwrap();
    // Two actions on one attribute are refused by both backends.
    let e = t
        .update(&Key::new("c#new", "a"), vec![Update::Add("n".into(), 1), Update::Remove("n".into())], None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_) | StoreError::Backend(_)), "{e:?}");
    assert_eq!(created["n"], json!(1));
    // Delete with a condition.
    let e = t.delete(&k, Some(Cond::Eq("v".into(), json!(99)))).await.unwrap_err();
    assert!(matches!(e, StoreError::ConditionFailed), "{e:?}");
    t.delete(&k, Some(Cond::Eq("v".into(), json!(2)))).await.unwrap();
    assert!(t.get(&k).await.unwrap().is_none());
}

async fn table_concurrent_counter(p: Ports) {
    let k = Key::new("counter", "rr");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let t = p.table.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            t.update(&k, vec![Update::Add("n".into(), 1)], None).await.unwrap()["n"].as_i64().unwrap()
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        assert!(seen.insert(t.await.unwrap()), "two increments saw the same value");
    }
    assert_eq!(seen, (1..=20).collect());
}

/// Takes 5 from acct#1 if it holds at least 5.
fn debit_acct1() -> TransactOp {
    TransactOp::Update {
        key: Key::new("acct#1", "bal"),
        actions: vec![Update::Add("n".into(), -5)],
        cond: Some(Cond::Ge("n".into(), json!(5))),
    }
}

/// Adds 5 to acct#2 if it holds exactly `expected`.
fn credit_acct2_if(expected: i64) -> TransactOp {
    TransactOp::Update {
        key: Key::new("acct#2", "bal"),
        actions: vec![Update::Add("n".into(), 5)],
        cond: Some(Cond::Eq("n".into(), json!(expected))),
    }
}

async fn table_transactions_are_atomic(p: Ports) {
    let t = &p.table;
    t.put(item("acct#1", "bal", json!({"n": 10})), None).await.unwrap();
    t.put(item("acct#2", "bal", json!({"n": 0})), None).await.unwrap();
    t.put(item("acct#3", "bal", json!({"open": true})), None).await.unwrap();
    // The second condition fails: nothing at all is written.
    let e = t
        .transact_write(vec![
            debit_acct1(),
            credit_acct2_if(1),
            TransactOp::Put { item: item("log#1", "x", json!({})), cond: Some(Cond::NotExists) },
        ])
        .await
        .unwrap_err();
    match e {
        StoreError::TransactionCanceled { reasons } => {
            assert_eq!(reasons.len(), 3);
            assert!(reasons[0].is_none() && reasons[1].is_some() && reasons[2].is_none(), "{reasons:?}");
        }
        other => panic!("expected a canceled transaction, got {other:?}"),
    }
    assert_eq!(t.get(&Key::new("acct#1", "bal")).await.unwrap().unwrap()["n"], json!(10));
    assert_eq!(t.get(&Key::new("acct#2", "bal")).await.unwrap().unwrap()["n"], json!(0));
    assert!(t.get(&Key::new("log#1", "x")).await.unwrap().is_none());
    // All conditions hold: everything is written.
    t.transact_write(vec![
        debit_acct1(),
        credit_acct2_if(0),
        TransactOp::Put { item: item("log#1", "x", json!({"moved": 5})), cond: Some(Cond::NotExists) },
        TransactOp::Check { key: Key::new("acct#3", "bal"), cond: Cond::Eq("open".into(), json!(true)) },
    ])
    .await
    .unwrap();
    assert_eq!(t.get(&Key::new("acct#1", "bal")).await.unwrap().unwrap()["n"], json!(5));
    assert_eq!(t.get(&Key::new("acct#2", "bal")).await.unwrap().unwrap()["n"], json!(5));
    assert_eq!(t.get(&Key::new("log#1", "x")).await.unwrap().unwrap()["moved"], json!(5));
    // One item twice in a transaction is refused by both backends.
    let e = t
        .transact_write(vec![
            TransactOp::Update {
                key: Key::new("acct#1", "bal"),
                actions: vec![Update::Add("n".into(), 1)],
                cond: None,
            },
            TransactOp::Check { key: Key::new("acct#1", "bal"), cond: Cond::Exists },
        ])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_) | StoreError::Backend(_)), "{e:?}");
    assert_eq!(t.get(&Key::new("acct#1", "bal")).await.unwrap().unwrap()["n"], json!(5));
    t.transact_write(vec![TransactOp::Delete { key: Key::new("log#1", "x"), cond: Some(Cond::Exists) }])
        .await
        .unwrap();
    assert!(t.get(&Key::new("log#1", "x")).await.unwrap().is_none());
}

async fn table_queries(p: Ports) {
    let t = &p.table;
    for i in 0..25 {
        let mut it = item("conv#1", &format!("msg#{i:03}"), json!({"i": i, "n": 100 + i}));
        it.insert("gsi1pk".into(), json!(if i % 2 == 0 { "even" } else { "odd" }));
        it.insert("gsi1sk".into(), json!(format!("t{:03}", 100 - i)));
        t.put(it, None).await.unwrap();
    }
    t.put(item("conv#1", "meta", json!({})), None).await.unwrap();
    t.put(item("conv#2", "msg#000", json!({})), None).await.unwrap();
    let all = t.query_all(Query::new("conv#1")).await.unwrap();
    assert_eq!(all.len(), 26);
    let msgs = t.query_all(Query::new("conv#1").sk(SkCond::BeginsWith("msg#".into()))).await.unwrap();
    assert_eq!(msgs.len(), 25);
    assert_eq!(msgs[0]["i"], json!(0));
    let between = t
        .query_all(Query::new("conv#1").sk(SkCond::Between("msg#005".into(), "msg#009".into())))
        .await
        .unwrap();
    assert_eq!(between.iter().map(|i| i["i"].as_i64().unwrap()).collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
    let gt = t.query_all(Query::new("conv#1").sk(SkCond::Gt("msg#020".into()))).await.unwrap();
    assert_eq!(gt.len(), 4, "msg#021..024 (\"meta\" sorts before \"msg#\")");
    // Pages of 10, newest first, without loss or repetition.
    let mut q = Query::new("conv#1").sk(SkCond::BeginsWith("msg#".into())).backward().limit(10);
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = t.query(q.clone()).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        got.extend(page.items.iter().map(|i| i["i"].as_i64().unwrap()));
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(got, (0..25).rev().collect::<Vec<_>>());
    // Secondary index, with its own sort order and pages.
    let mut q = Query::new("even").index("gsi1").limit(4);
    let mut even = Vec::new();
    loop {
        let page = t.query(q.clone()).await.unwrap();
        even.extend(page.items.iter().map(|i| i["i"].as_i64().unwrap()));
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(even, (0..25).filter(|i| i % 2 == 0).rev().collect::<Vec<_>>());
    let odd_prefix =
        t.query_all(Query::new("odd").index("gsi1").sk(SkCond::BeginsWith("t09".into()))).await.unwrap();
    assert_eq!(odd_prefix.len(), 5, "t091 t093 t095 t097 t099");
    // The same items as JSON text, in the same order, over more than one page; a projection
    // holds there too.
    let q = Query::new("conv#1").sk(SkCond::BeginsWith("msg#".into())).limit(7);
    let texts = t.query_all_json(q.clone()).await.unwrap();
    let decoded: Vec<mailroom_store::Item> = texts.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    assert_eq!(decoded, t.query_all(q.clone()).await.unwrap());
    assert_eq!(decoded.len(), 25);
    let q = q.project(&["i"]);
    let projected: Vec<mailroom_store::Item> =
        t.query_all_json(q.clone()).await.unwrap().iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    assert_eq!(projected, t.query_all(q).await.unwrap());
    assert_eq!(projected[0]["i"], json!(0));
    assert!(projected.iter().all(|i| !i.contains_key("n")), "only the projected attributes");
}

async fn queue_batches_and_delete(p: Ports) {
    let q = &p.ingest_queue;
    let bodies: Vec<String> = (0..15).map(|i| format!("m{i}")).collect();
    let ids = q.send_batch(&bodies).await.unwrap();
    assert_eq!(ids.len(), 15);
    let mut got = HashSet::new();
    for _ in 0..20 {
        for m in q.receive(10, Duration::from_secs(30), Duration::from_secs(1)).await.unwrap() {
            assert_eq!(m.receive_count, 1);
            got.insert(m.body.clone());
            q.delete(&m.receipt).await.unwrap();
        }
        if got.len() == 15 {
            break;
        }
    }
    assert_eq!(got.len(), 15);
    assert!(q.receive(10, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap().is_empty());
    assert_eq!(q.approximate_len().await.unwrap(), 0);
}

async fn queue_visibility_redelivery(p: Ports) {
    let q = &p.ingest_queue;
    q.send("hello").await.unwrap();
    let first = q.receive(1, Duration::from_secs(2), Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    // Hidden while in flight...
    assert!(q.receive(1, Duration::from_secs(2), Duration::ZERO).await.unwrap().is_empty());
    // ...and back once the visibility timeout passes without a delete.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = q.receive(1, Duration::from_secs(30), Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1, "not redelivered after the visibility timeout");
    assert_eq!(again[0].body, "hello");
    assert_eq!(again[0].receive_count, 2);
    // The old receipt no longer deletes it; a change of visibility to 0 makes it visible.
    q.change_visibility(&again[0].receipt, Duration::ZERO).await.unwrap();
    let third = q.receive(1, Duration::from_secs(30), Duration::from_secs(2)).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].receive_count, 3);
    q.delete(&third[0].receipt).await.unwrap();
    assert!(q.receive(1, Duration::from_secs(1), Duration::from_millis(500)).await.unwrap().is_empty());
}

async fn queue_dead_letter_after_five_receives(p: Ports) {
    let q = &p.ingest_queue;
    let dlq = p.ingest_dlq.clone().expect("a dead-letter queue");
    q.send("poison").await.unwrap();
    q.send("fine").await.unwrap();
    let mut receives = 0;
    for _ in 0..5 {
        let got = q.receive(10, Duration::ZERO, Duration::from_secs(1)).await.unwrap();
        for m in got {
            if m.body == "fine" {
                q.delete(&m.receipt).await.unwrap();
            } else {
                receives += 1;
                assert_eq!(m.receive_count, receives);
            }
        }
    }
    assert_eq!(receives, 5);
    // The sixth receive moves it to the DLQ instead of delivering it.
    let got = q.receive(10, Duration::ZERO, Duration::from_millis(500)).await.unwrap();
    assert!(got.is_empty(), "delivered a sixth time: {got:?}");
    let dead = dlq.receive(10, Duration::from_secs(30), Duration::from_secs(2)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
}

async fn embedded() -> (Ports, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Ports::embedded(dir.path()).unwrap(), dir)
}

async fn secrets_seal_and_open(p: Ports) {
    let s = &p.secrets;
    let sealed = s.seal("inbox/a@b.example/oauth", b"refresh-token-123").await.unwrap();
    assert!(!sealed.windows(9).any(|w| w == b"refresh-t"), "sealed bytes hold the plaintext");
    assert_eq!(s.open("inbox/a@b.example/oauth", &sealed).await.unwrap(), b"refresh-token-123");
    // Sealed for one context, it does not open for another (a token moved between inboxes).
    assert!(s.open("inbox/c@d.example/oauth", &sealed).await.is_err());
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(s.open("inbox/a@b.example/oauth", &tampered).await.is_err());
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded_adapter {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (p, _dir) = super::embedded().await;
                    super::$name(p).await;
                }
            )*
        }
        mod aws_adapter_on_moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let stack = super::AwsStack::create().await;
                    super::$name(stack.ports()).await;
                }
            )*
        }
    };
}

contract!(
    blob_put_if_absent,
    table_conditional_writes,
    table_concurrent_counter,
    table_transactions_are_atomic,
    table_queries,
    queue_batches_and_delete,
    queue_visibility_redelivery,
    queue_dead_letter_after_five_receives,
    secrets_seal_and_open,
);

/// The event bus contract: events published in order are all accepted and come out the
/// other side in that order with their type and detail. `read` gets what arrived.
async fn bus_contract(
    bus: &dyn mailroom_store::EventBus,
    read: impl AsyncFn(usize) -> Vec<(String, String)>,
) {
    let events: Vec<mailroom_store::BusEvent> = (0..13)
        .map(|i| mailroom_store::BusEvent {
            source: "mailroom".into(),
            detail_type: if i % 2 == 0 { "assigned".into() } else { "comment_added".into() },
            detail: json!({"n": i}).to_string(),
            time: Some(chrono::Utc::now()),
        })
        .collect();
    let (n, err) = bus.publish(&events).await;
    assert_eq!((n, err.map(|e| e.to_string())), (13, None));
    let got = read(13).await;
    let want: Vec<(String, String)> =
        events.iter().map(|e| (e.detail_type.clone(), e.detail.clone())).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn event_bus_spool_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let bus = mailroom_store::embedded::SpoolBus { path: path.clone() };
    bus_contract(&bus, async |_| {
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<mailroom_store::BusEvent>(l).unwrap())
            .map(|e| (e.detail_type, e.detail))
            .collect()
    })
    .await;
}

#[tokio::test]
async fn event_bus_eventbridge_adapter_on_moto() {
    let conf = mailroom_tests::moto_conf().await;
    let (bus_name, q_url) = mailroom_tests::event_bus_into_queue(&conf).await;
    let (eb, sqs) = (aws_sdk_eventbridge::Client::new(&conf), aws_sdk_sqs::Client::new(&conf));
    let bus = mailroom_store::aws::EventBridgeBus { client: eb, bus: bus_name };
    bus_contract(&bus, async |n| {
        let mut got = Vec::new();
        for _ in 0..20 {
            let r = sqs.receive_message().queue_url(&q_url).max_number_of_messages(10).send().await.unwrap();
            for m in r.messages() {
                let v: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
                got.push((v["detail-type"].as_str().unwrap().to_string(), v["detail"].to_string()));
            }
            if got.len() >= n {
                break;
            }
        }
        got
    })
    .await;
}

/// The mail sender contract: a message handed over arrives whole (`arrived`), and an
/// address that is not one is refused before anything is sent.
async fn mail_contract(
    sender: &dyn mailroom_store::MailSender,
    from: &str,
    arrived: impl AsyncFn() -> Option<Vec<u8>>,
) {
    let raw = format!(
        "From: {from}\r\nTo: ann@acme.example\r\nSubject: Contract\r\nMessage-ID: <contract@acme.example>\r\n\r\nHello.\r\n"
    );
    sender.send_raw(from, &["ann@acme.example".to_string()], raw.as_bytes()).await.unwrap();
    if let Some(got) = arrived().await {
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(text.contains("Subject: Contract") && text.contains("Hello."), "{text}");
    }
    assert!(sender.send_raw(from, &["not an address".to_string()], raw.as_bytes()).await.is_err());
}

#[tokio::test]
async fn mail_sender_smtp_adapter() {
    let sink = mailroom_tests::smtp::SmtpSink::start();
    let sender =
        mailroom_store::embedded::SmtpSender::new(&format!("smtp://127.0.0.1:{}", sink.port())).unwrap();
    mail_contract(&sender, "mailroom@acme.example", async || {
        Some(sink.wait_for(1, Duration::from_secs(10))[0].clone())
    })
    .await;
}

#[tokio::test]
async fn mail_sender_ses_adapter_on_moto() {
    let conf = mailroom_tests::moto_conf().await;
    let ses = aws_sdk_sesv2::Client::new(&conf);
    ses.create_email_identity().email_identity("mailroom@acme.example").send().await.unwrap();
    let sender = mailroom_store::aws::SesSender { client: ses };
    // moto keeps what SES sent out of reach of the SDK: the handover and the refusals are checked.
    mail_contract(&sender, "mailroom@acme.example", async || None).await;
    let raw = b"From: x@unverified.example\r\nTo: a@b.example\r\nSubject: x\r\n\r\nx\r\n";
    assert!(sender.send_raw("x@unverified.example", &["a@b.example".to_string()], raw).await.is_err());
}
