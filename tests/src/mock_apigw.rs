//! A loopback stand-in for API Gateway's WebSocket management API
//! (`POST /{stage}/@connections/{id}` with the frame as the body, `DELETE` to close,
//! `GET` for the connection's state), as `aws-sdk-apigatewaymanagement` calls it. It
//! records every frame per connection; a connection marked gone answers 410
//! (`GoneException`), like API Gateway for a closed socket.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    frames: HashMap<String, Vec<serde_json::Value>>,
    gone: HashSet<String>,
}

#[derive(Clone)]
pub struct MockApiGateway {
    inner: Arc<Mutex<Inner>>,
    pub base: String,
}

async fn post_frame(
    State(st): State<Arc<Mutex<Inner>>>,
    Path((_stage, id)): Path<(String, String)>,
    body: Bytes,
) -> impl IntoResponse {
    let mut i = st.lock().unwrap();
    if i.gone.contains(&id) {
        return (StatusCode::GONE, r#"{"message":"GoneException"}"#).into_response();
    }
    let v =
        serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::json!(String::from_utf8_lossy(&body)));
    i.frames.entry(id).or_default().push(v);
    StatusCode::OK.into_response()
}

async fn delete_conn(
    State(st): State<Arc<Mutex<Inner>>>,
    Path((_stage, id)): Path<(String, String)>,
) -> StatusCode {
    st.lock().unwrap().gone.insert(id);
    StatusCode::NO_CONTENT
}

impl MockApiGateway {
    pub async fn start() -> MockApiGateway {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{stage}/@connections/{id}", post(post_frame).delete(delete_conn))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockApiGateway { inner, base }
    }

    /// The `MAILROOM_CHAT_ENDPOINT` of a stage named `chat`.
    pub fn endpoint(&self) -> String {
        format!("{}/chat", self.base)
    }

    /// Every frame posted to `connection`, in order.
    pub fn frames(&self, connection: &str) -> Vec<serde_json::Value> {
        self.inner.lock().unwrap().frames.get(connection).cloned().unwrap_or_default()
    }

    /// From now on `connection` answers 410, as a socket the visitor closed.
    pub fn close(&self, connection: &str) {
        self.inner.lock().unwrap().gone.insert(connection.to_string());
    }
}
