//! The chat on AWS: the `mailroom-chat` binary under cargo-lambda's runtime emulator,
//! given the WebSocket API's event JSON for `$connect`, `$default` and `$disconnect`, with
//! the template's environment, against moto and a loopback stand-in for the management
//! API (tests/src/mock_apigw.rs). Then the send stage, in process on the same stack,
//! pushes an agent's reply to the visitor's connection while they are there, and tries
//! email once they left.

use crate::lambda::{invoke, start};
use mailroom_app::outbound::reply::ReplyRequest;
use mailroom_app::{Ports, Worker};
use mailroom_tests::AwsStack;
use mailroom_tests::mock_apigw::MockApiGateway;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHOP: &str = "https://shop.example";

fn ws_event(route: &str, connection: &str, origin: Option<&str>, body: Option<Value>) -> Value {
    let mut headers = json!({"host": "chatapi.execute-api.eu-west-1.amazonaws.com"});
    if let Some(o) = origin {
        headers["origin"] = json!(o);
    }
    let event_type = match route {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    json!({
        "headers": headers,
        "queryStringParameters": if route == "$connect" { json!({"widget": "site"}) } else { Value::Null },
        "requestContext": {
            "routeKey": route,
            "eventType": event_type,
            "connectionId": connection,
            "messageDirection": "IN",
            "apiId": "chatapi",
            "stage": "chat",
            "domainName": "chatapi.execute-api.eu-west-1.amazonaws.com",
            "requestId": format!("req-{connection}-{route}"),
            "connectedAt": 1_733_550_000_000i64,
            "requestTimeEpoch": 1_733_550_000_000i64,
            "identity": {"sourceIp": "198.51.100.7"}
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

async fn last_frame(mgmt: &MockApiGateway, connection: &str, n: usize) -> Value {
    let t = Instant::now();
    loop {
        let f = mgmt.frames(connection);
        if f.len() >= n {
            return f[n - 1].clone();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "frame {n} to {connection} never came: {f:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn process(
    ports: &Ports,
    queue: Arc<dyn mailroom_store::Queue>,
    h: Arc<dyn mailroom_app::MessageHandler>,
) {
    let r = Worker::new(queue, h).drain().await.unwrap();
    assert_eq!(r.failed, 0, "{r:?}");
    ports.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_function_runs_the_widget_protocol_on_moto_and_the_send_stage_pushes_the_reply() {
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let mgmt = MockApiGateway::start().await;
    let ws = mailroom_tests::acme_workspace_with_chat(SHOP);
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    let mut env = stack.function_env();
    env.push(("MAILROOM_CHAT_ENDPOINT".into(), mgmt.endpoint()));
    let (port, _w, _f) = start("mailroom-chat", &env);

    // $connect: the origin allow-list, before anything is stored.
    let r = invoke(port, &ws_event("$connect", "c-evil", Some("https://evil.example"), None));
    assert_eq!(r["statusCode"], 403, "{r}");
    let r = invoke(port, &ws_event("$connect", "c-none", None, None));
    assert_eq!(r["statusCode"], 403, "{r}");
    let r = invoke(port, &ws_event("$connect", "c1", Some(SHOP), None));
    assert_eq!(r["statusCode"], 200, "{r}");

    // The widget's frames, answered through the management API.
    invoke(port, &ws_event("$default", "c1", None, Some(json!({"type": "hello"}))));
    let hi = last_frame(&mgmt, "c1", 1).await;
    assert_eq!(hi["type"], "need_identity", "{hi}");
    assert_eq!(hi["agents_online"], Value::Null, "on AWS the function cannot tell: {hi}");
    let start_frame = json!({"type": "start", "name": "Ada Visitor", "email": "ada@visitor.example"});
    invoke(port, &ws_event("$default", "c1", None, Some(start_frame)));
    let ready = last_frame(&mgmt, "c1", 2).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    let line =
        json!({"type": "message", "text": "Hello from the shop page", "page": "https://shop.example/cart"});
    invoke(port, &ws_event("$default", "c1", None, Some(line)));
    let ack = last_frame(&mgmt, "c1", 3).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let mid = ack["message_id"].as_str().unwrap().to_string();
    // A frame from a connection the function never saw is told to reconnect.
    invoke(port, &ws_event("$default", "c-unknown", None, Some(json!({"type": "hello"}))));
    assert_eq!(last_frame(&mgmt, "c-unknown", 1).await["code"], "session");

    // The line is stored like mail and queued: the stages run here, on the same stack.
    process(&ports, ports.ingest_queue.clone(), Arc::new(mailroom_app::MatchHandler::new(ports.clone())))
        .await;
    process(&ports, ports.route_queue.clone(), Arc::new(mailroom_app::RouteHandler::new(ports.clone())))
        .await;
    process(&ports, ports.ticket_queue.clone(), Arc::new(mailroom_app::TicketHandler::new(ports.clone())))
        .await;
    let msg =
        ports.table.get(&mailroom_app::keys::message(&mid)).await.unwrap().expect("the line is a message");
    assert_eq!(msg["channel"], "chat");
    assert_eq!(msg["direction"], "inbound");
    let conv = msg["conversation"].as_str().unwrap().to_string();

    // An agent's reply while the visitor is connected: pushed to c1, not emailed.
    let providers =
        Arc::new(mailroom_app::runtime::config::ProvidersConfig::from_env("https://mailroom.test").unwrap());
    let push = Arc::new(mailroom_app::chat::push::ApiGatewayPush::new(
        &mailroom_tests::moto_conf().await,
        &mgmt.endpoint(),
    ));
    let send = || {
        Arc::new(
            mailroom_app::outbound::send::SendHandler::new(ports.clone(), providers.clone())
                .with_chat_push(push.clone()),
        )
    };
    let reply = |rid: &str, text: &str| ReplyRequest {
        request_id: rid.into(),
        author: "james.oconnor@acme-corp.example".into(),
        text: text.into(),
        html: None,
        cc: vec![],
        to: None,
        attachments: vec![],
    };
    mailroom_app::outbound::reply::queue_reply(
        &ports,
        &ws,
        &conv,
        reply("r1", "Hi Ada, happy to help."),
        None,
    )
    .await
    .unwrap();
    process(&ports, ports.send_queue.clone(), send()).await;
    let pushed = last_frame(&mgmt, "c1", 4).await;
    assert_eq!(pushed["type"], "message", "{pushed}");
    assert_eq!(pushed["from"], "agent");
    assert!(pushed["text"].as_str().unwrap().starts_with("Hi Ada, happy to help."), "{pushed}");

    // $disconnect: the visitor is gone; the next reply is for email (no mailbox is
    // connected here, so it fails for that reason) and nothing more is pushed.
    let r = invoke(port, &ws_event("$disconnect", "c1", None, None));
    assert_eq!(r["statusCode"], 200, "{r}");
    let sid = mailroom_app::chat::session_of_message_id(&mid).unwrap().to_string();
    assert!(!mailroom_app::chat::is_online(&ports, &sid).await.unwrap());
    mailroom_app::outbound::reply::queue_reply(&ports, &ws, &conv, reply("r2", "Are you still there?"), None)
        .await
        .unwrap();
    process(&ports, ports.send_queue.clone(), send()).await;
    let outbox = mailroom_app::outbound::reply::outbox(&ports, &conv).await.unwrap();
    let second = serde_json::to_value(outbox.iter().find(|o| o.request_id == "r2").unwrap()).unwrap();
    assert_eq!(second["status"], "failed", "{second}");
    assert!(second["last_error"].as_str().unwrap().contains("no mailbox connection"), "{second}");
    assert_eq!(mgmt.frames("c1").len(), 4, "nothing pushed after the visitor left");
}
