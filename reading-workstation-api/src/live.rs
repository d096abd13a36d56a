//! `GET /api/events?after=ID`: the live feed over a websocket — tasks created, claimed,
//! released, due soon, overdue; reports signed and amended; critical findings; studies
//! ready; deliveries — each sent only to callers its audience admits
//! (`pacs_store::access::Audience`).
//!
//! One [`LiveFeed`] task reads new outbox events (every [`POLL`]) with their audience and
//! broadcasts them; every connection filters them for its caller. A client sends back the
//! last id it got as `after` when it reconnects and receives everything since, from the
//! database, before the live events: nothing is lost, nothing comes twice. Without
//! `after`, a client gets what happens from now on. Messages are JSON text:
//! `{"id", "kind", "study_instance_uid", "payload", "created_at"}`.
//!
//! The upgrade goes through the same authentication as every route (session cookie or
//! bearer token); a browser's cross-site request is refused by its Origin (the session
//! cookie is SameSite=Strict as well). Opening the feed is audited as a query (110112).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use pacs_store::access::Audience;
use pacs_store::audit::{Action, EventId};
use pacs_store::index::Index;
use pacs_store::live_events::LiveEvent;
use pacs_store::users::Principal;
use tokio::sync::broadcast;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;

/// How often the outbox is read for new events.
pub const POLL: Duration = Duration::from_millis(100);
/// Events read from the database at a time (replay and polling).
const BATCH: i64 = 500;

type Batch = Arc<Vec<(LiveEvent, Audience)>>;

/// The one reader of the outbox for all connections. Cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Batch>,
}

impl LiveFeed {
    /// Starts reading `index`'s outbox from its newest event on.
    pub async fn start(index: Index) -> pacs_store::Result<LiveFeed> {
        let (tx, _) = broadcast::channel(1024);
        let mut after = index.last_event_id().await?;
        let sender = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                if sender.receiver_count() == 0 {
                    // Nobody listens: keep the position current, read nothing.
                    if let Ok(last) = index.last_event_id().await {
                        after = after.max(last);
                    }
                    continue;
                }
                match index.live_events_after(after, BATCH).await {
                    Ok(events) if events.is_empty() => {}
                    Ok(events) => {
                        after = events.last().map_or(after, |(e, _)| e.id);
                        let _ = sender.send(Arc::new(events));
                    }
                    Err(e) => tracing::warn!(error = %e, "live feed: cannot read the outbox"),
                }
            }
        });
        Ok(LiveFeed { tx })
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// The id of the last event received: everything after it is sent first.
    after: Option<i64>,
}

/// `GET /api/events?after=ID` (websocket).
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<FeedParams>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("this is a websocket endpoint: {}", e.body_text()))
    })?;
    if !same_origin(&headers) {
        return Err(ApiError::forbidden(
            "the websocket's Origin is not this server",
        ));
    }
    if params.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("after must not be negative"));
    }
    let feed = state.live.clone();
    let index = state.archive.index().clone();
    let after = match params.after {
        Some(a) => a,
        None => index.last_event_id().await?,
    };
    let event = caller
        .event(EventId::Query, Action::Execute)
        .with_detail(format!("live events after {after}"));
    caller.audit_read(&state, event).await?;
    let principal = caller.principal.clone();
    Ok(upgrade
        .on_upgrade(move |socket| serve(socket, feed, index, principal, after))
        .into_response())
}

/// A browser sends Origin with a websocket; it must name this server (the Host it asked).
/// Non-browser clients send none.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && origin_host == host
}

async fn serve(
    mut socket: WebSocket,
    feed: LiveFeed,
    index: Index,
    who: Principal,
    mut after: i64,
) {
    // Subscribe before the replay: what arrives meanwhile is kept, and skipped if the
    // replay already sent it.
    let mut live = feed.tx.subscribe();
    if replay(&mut socket, &index, &who, &mut after).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            batch = live.recv() => match batch {
                Ok(batch) => {
                    for (event, audience) in batch.iter() {
                        if event.id <= after {
                            continue;
                        }
                        if audience.admits(&who) && send(&mut socket, event).await.is_err() {
                            return;
                        }
                        after = event.id;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live stream: catch up from the database.
                    if replay(&mut socket, &index, &who, &mut after).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends the events after `after` from the database, then leaves `after` at the last
/// event read (sent or not: the caller's audience decides).
async fn replay(
    socket: &mut WebSocket,
    index: &Index,
    who: &Principal,
    after: &mut i64,
) -> Result<(), ()> {
    loop {
        let events = index.live_events_after(*after, BATCH).await.map_err(|e| {
            tracing::warn!(error = %e, "live feed: cannot replay events");
        })?;
        let n = events.len();
        for (event, audience) in &events {
            if audience.admits(who) {
                send(socket, event).await?;
            }
            *after = event.id;
        }
        if (n as i64) < BATCH {
            return Ok(());
        }
    }
}

async fn send(socket: &mut WebSocket, event: &LiveEvent) -> Result<(), ()> {
    let text = serde_json::to_string(event).map_err(|_| ())?;
    tokio::time::timeout(
        Duration::from_secs(10),
        socket.send(Message::Text(text.into())),
    )
    .await
    .map_err(|_| ())?
    .map_err(|_| ())
}
