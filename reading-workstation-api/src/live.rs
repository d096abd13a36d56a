//! `GET /api/events?after=ID`: the live feed over a websocket — tasks created, claimed,
//! released, due soon, overdue; reports signed and amended; critical findings; studies
//! ready; deliveries — each sent only to callers its audience admits
//! (`pacs_store::access::Audience`).
//!
//! One [`LiveFeed`] task per node reads new outbox events with their audience, serialises
//! each to its JSON text once, and broadcasts them; every connection filters them for its
//! caller and sends the shared text. The reader wakes when this process commits events
//! (`Index::notify_events`: every successful state-changing request calls it, see
//! `crate::router`) and otherwise every [`POLL`], for events committed by other processes
//! or nodes. While nobody is connected it reads nothing at all, and when the first
//! connection comes it starts from the newest event.
//!
//! A client sends back the last id it got as `after` when it reconnects and receives
//! everything since, from the database, before the live events: nothing is lost, nothing
//! comes twice. Every broadcast batch says which event it follows; a connection that finds
//! a gap between what it has sent and a batch (it lagged behind, or the reader started
//! after it) fills it from the database first. Without `after`, a client gets what happens
//! from now on. Messages are JSON text: `{"id", "kind", "study_instance_uid", "payload",
//! "created_at"}`.
//!
//! The upgrade goes through the same authentication as every route (session cookie or
//! bearer token); a browser's cross-site request is refused by its Origin (the session
//! cookie is SameSite=Strict as well). Opening the feed is audited as a query (110112).
//! While a connection is open, its credentials are re-checked every [`RECHECK`] by one
//! task for all connections (each distinct session or token once, spread over half the
//! period, without counting as a use: an open feed does not keep an idle session alive),
//! and at once after a logout, a user disabled, a password reset or a token revoked on
//! this node. When they no longer hold — logged out, expired, revoked, user disabled — the
//! connection is closed with code [`CLOSE_CREDENTIALS_ENDED`] and the reason ("session
//! ended", "token revoked", …).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use pacs_store::access::{Audience, Scope};
use pacs_store::audit::{Action, EventId};
use pacs_store::index::Index;
use pacs_store::users::{AuthFailure, Principal, Username};
use tokio::sync::{Notify, broadcast, watch};

use crate::ApiState;
use crate::auth::{Caller, Via};
use crate::error::ApiError;

/// How often the outbox is read when nothing wakes the reader: the longest an event
/// committed by another process or node waits before it is sent. One indexed query per
/// node, and none while nobody is connected.
pub const POLL: Duration = Duration::from_millis(25);
/// How often the credentials of open connections are checked again.
pub const RECHECK: Duration = Duration::from_secs(5);
/// The close code sent when the credentials of a connection no longer hold (as HTTP 401:
/// log in again). 4000–4999 are for applications (RFC 6455, 7.4.2).
pub const CLOSE_CREDENTIALS_ENDED: u16 = 4401;
/// Events read from the database at a time (replay and polling).
const BATCH: i64 = 500;
/// The read buffer of a connection.
const READ_BUFFER: usize = 4 * 1024;
/// The largest message or frame a client may send.
const MAX_INCOMING: usize = 64 * 1024;
/// How long one message may take to go out before the connection is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// An event as every connection sends it: its JSON text made once.
struct Outgoing {
    id: i64,
    audience: Audience,
    text: Utf8Bytes,
}

/// What the reader broadcasts: the events after `after`, all of them (of the live kinds).
struct Batch {
    after: i64,
    events: Vec<Outgoing>,
}

/// The one reader of the outbox for all connections, and the re-checking of their
/// credentials. Cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    shared: Arc<Shared>,
}

struct Shared {
    tx: broadcast::Sender<Arc<Batch>>,
    /// A connection subscribed: wakes the reader when it waits for one.
    listening: Notify,
    /// Credentials may have ended on this node: re-check now.
    recheck: Notify,
    watched: Mutex<Watched>,
}

impl LiveFeed {
    /// Starts reading `index`'s outbox (from its newest event, once someone listens) and
    /// re-checking the credentials of open connections.
    pub async fn start(index: Index) -> pacs_store::Result<LiveFeed> {
        let (tx, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            tx,
            listening: Notify::new(),
            recheck: Notify::new(),
            watched: Mutex::new(Watched::default()),
        });
        let after = index.last_event_id().await?;
        tokio::spawn(read_outbox(index.clone(), shared.clone(), after));
        tokio::spawn(recheck_credentials(index, shared.clone()));
        Ok(LiveFeed { shared })
    }

    /// Re-checks the credentials of every open connection now (after a logout, a user
    /// disabled, a password reset or a token revoked), rather than at the next
    /// [`RECHECK`]. Several calls before the check runs make one check.
    pub fn recheck_now(&self) {
        self.shared.recheck.notify_one();
    }

    /// The number of open connections (for tests and metrics).
    pub fn connections(&self) -> usize {
        self.shared.tx.receiver_count()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        let rx = self.shared.tx.subscribe();
        self.shared.listening.notify_one();
        rx
    }
}

/// The reader: waits for a listener, then reads new events whenever this process commits
/// some or every [`POLL`], and broadcasts them.
async fn read_outbox(index: Index, shared: Arc<Shared>, mut after: i64) {
    let mut committed = index.event_notifications();
    let mut backlog = false;
    loop {
        if shared.tx.receiver_count() == 0 {
            // Nobody listens: no query until someone does, then start from the newest
            // event (a connection replays what it needs itself: see `Batch::after`).
            shared.listening.notified().await;
            match index.last_event_id().await {
                Ok(last) => after = after.max(last),
                Err(e) => tracing::warn!(error = %e, "live feed: cannot read the outbox"),
            }
            continue;
        }
        if !backlog {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = committed.changed() => {}
            }
        }
        // Mark what has been announced so far as seen before reading: a commit announced
        // during the read wakes the next round.
        committed.borrow_and_update();
        match index.live_events_after(after, BATCH).await {
            Ok(events) if events.is_empty() => backlog = false,
            Ok(events) => {
                backlog = events.len() as i64 >= BATCH;
                let batch = Batch {
                    after,
                    events: events
                        .into_iter()
                        .filter_map(|(event, audience)| {
                            let text = serde_json::to_string(&event)
                                .map_err(|e| {
                                    tracing::warn!(event = event.id, error = %e,
                                        "live feed: cannot serialise an event");
                                })
                                .ok()?;
                            Some(Outgoing {
                                id: event.id,
                                audience,
                                text: text.into(),
                            })
                        })
                        .collect(),
                };
                after = batch.events.last().map_or(after, |e| e.id);
                let _ = shared.tx.send(Arc::new(batch));
            }
            Err(e) => {
                backlog = false;
                tracing::warn!(error = %e, "live feed: cannot read the outbox");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Credentials of open connections

/// What a connection authenticated with, to ask the index again whether it holds. No
/// `Debug`: it holds a secret.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Credential {
    Session(String),
    Token(String),
    /// HTTP Basic (not accepted on this route today): the user must stay enabled.
    User(Username),
}

impl Credential {
    fn of(caller: &Caller) -> Credential {
        match &caller.via {
            Via::Session { secret, .. } => Credential::Session(secret.expose().to_owned()),
            Via::Token { secret } => Credential::Token(secret.expose().to_owned()),
            Via::Basic => Credential::User(caller.principal.username.clone()),
        }
    }

    /// The principal these credentials stand for now, asked without counting as a use.
    async fn check(&self, index: &Index) -> Result<Principal, AuthFailure> {
        match self {
            Credential::Session(secret) => index.recheck_session(secret).await,
            Credential::Token(secret) => index.recheck_token(secret).await,
            Credential::User(name) => match index.find_user(name).await? {
                Some(u) if u.disabled => Err(AuthFailure::Disabled),
                Some(u) => Ok(u.into()),
                None => Err(AuthFailure::BadCredentials),
            },
        }
    }

    /// Why a connection with these credentials is closed, for the close frame.
    fn ended(&self, failure: &AuthFailure) -> &'static str {
        let session = matches!(self, Credential::Session(_));
        match failure {
            // Disabling a user also ends their sessions, in the same transaction; a recheck
            // may still read the session before that commit and the user after it, so a
            // session's connection says "session ended" whichever it saw.
            AuthFailure::Disabled if session => "session ended",
            AuthFailure::Disabled => "account disabled",
            AuthFailure::Expired if session => "session expired",
            AuthFailure::Expired => "token expired",
            _ if session => "session ended",
            _ if matches!(self, Credential::Token(_)) => "token revoked",
            _ => "credentials no longer valid",
        }
    }
}

/// The open connections, by credentials: each is checked once however many connections
/// share it.
#[derive(Default)]
struct Watched {
    next_generation: u64,
    by_credential: HashMap<Credential, WatchEntry>,
}

struct WatchEntry {
    /// Tells this entry from a later one for the same credentials.
    generation: u64,
    principal: Principal,
    connections: usize,
    /// `Some(reason)` once the credentials no longer hold.
    ended: watch::Sender<Option<&'static str>>,
}

/// A connection's place in [`Watched`]; leaves it when dropped.
struct Registration {
    shared: Arc<Shared>,
    credential: Credential,
    generation: u64,
    ended: watch::Receiver<Option<&'static str>>,
}

impl Registration {
    fn new(shared: &Arc<Shared>, credential: Credential, principal: &Principal) -> Self {
        let mut watched = shared.watched.lock().unwrap_or_else(|p| p.into_inner());
        let Watched {
            next_generation,
            by_credential,
        } = &mut *watched;
        let entry = by_credential.entry(credential.clone()).or_insert_with(|| {
            *next_generation += 1;
            WatchEntry {
                generation: *next_generation,
                principal: principal.clone(),
                connections: 0,
                ended: watch::channel(None).0,
            }
        });
        entry.connections += 1;
        Registration {
            generation: entry.generation,
            ended: entry.ended.subscribe(),
            shared: shared.clone(),
            credential,
        }
    }

    /// Resolves with the reason once the credentials no longer hold.
    async fn ended(&mut self) -> &'static str {
        let verdict = self
            .ended
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.unwrap_or("credentials no longer valid"));
        match verdict {
            Ok(reason) => reason,
            // The entry went without a verdict: cannot happen while this registration
            // holds it; never end a connection for it.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut watched = self
            .shared
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = watched.by_credential.get_mut(&self.credential)
            && entry.generation == self.generation
        {
            entry.connections -= 1;
            if entry.connections == 0 {
                watched.by_credential.remove(&self.credential);
            }
        }
    }
}

/// Every [`RECHECK`] (or at once when asked), asks the index whether each credential of an
/// open connection still holds for the same principal; ends the connections of those that
/// do not. An index that cannot answer ends nothing (it is tried again next time).
///
/// A periodic pass is spread over the first half of the period, so that a thousand
/// connections do not become a burst of queries that delays the events; a pass asked for
/// (a logout, a user disabled…) is not, and one asked for during a spread pass follows it
/// at once.
async fn recheck_credentials(index: Index, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: nothing to check yet
    let mut asked = false;
    loop {
        if !asked {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.recheck.notified() => asked = true,
            }
        }
        let open: Vec<(Credential, u64, Principal)> = {
            let watched = shared.watched.lock().unwrap_or_else(|p| p.into_inner());
            watched
                .by_credential
                .iter()
                .map(|(c, e)| (c.clone(), e.generation, e.principal.clone()))
                .collect()
        };
        let mut pace = if asked {
            Duration::ZERO
        } else {
            RECHECK / 2 / u32::try_from(open.len().max(1)).unwrap_or(u32::MAX)
        };
        asked = false;
        let mut unanswered = 0usize;
        for (credential, generation, principal) in open {
            if pace >= Duration::from_millis(1) {
                tokio::select! {
                    _ = tokio::time::sleep(pace) => {}
                    _ = shared.recheck.notified() => {
                        // Finish this pass at once, then check everything again.
                        pace = Duration::ZERO;
                        asked = true;
                    }
                }
            }
            let reason = match credential.check(&index).await {
                Ok(now) if Scope::of(&now) == Scope::of(&principal) => continue,
                // Not today (roles and clinics do not change), but a connection must never
                // go on seeing under another scope than the one audited when it opened.
                Ok(_) => "account changed",
                Err(AuthFailure::Store(_) | AuthFailure::Throttled { .. }) => {
                    unanswered += 1;
                    continue;
                }
                Err(failure) => credential.ended(&failure),
            };
            let mut watched = shared.watched.lock().unwrap_or_else(|p| p.into_inner());
            if watched
                .by_credential
                .get(&credential)
                .is_some_and(|e| e.generation == generation)
                && let Some(entry) = watched.by_credential.remove(&credential)
            {
                tracing::info!(user = %principal.username, reason,
                    connections = entry.connections, "live feed: closing connections");
                entry.ended.send_replace(Some(reason));
            }
        }
        if unanswered > 0 {
            tracing::warn!(
                credentials = unanswered,
                "live feed: cannot re-check the credentials of open connections (index error); \
                 trying again"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The route

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
    let credential = Credential::of(&caller);
    let principal = caller.principal;
    Ok(upgrade
        // A client sends nothing but control frames: no need for tungstenite's 128 KiB read
        // buffer per connection (128 MB for a thousand) nor its 64 MiB messages.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| {
            serve(Connection {
                socket,
                feed,
                index,
                who: principal,
                credential,
                after,
            })
        })
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

struct Connection {
    socket: WebSocket,
    feed: LiveFeed,
    index: Index,
    who: Principal,
    credential: Credential,
    /// The last event id sent or passed over (the caller's audience decides).
    after: i64,
}

/// Why a connection stopped sending.
enum Stop {
    /// The client went away, or sending failed: nothing more to say.
    Gone,
    /// The credentials no longer hold: say why in the close frame.
    CredentialsEnded(&'static str),
}

async fn serve(mut c: Connection) {
    // Subscribe and register before the replay: what arrives meanwhile is kept (and skipped
    // if the replay already sent it), and credentials ended meanwhile are noticed.
    let mut live = c.feed.subscribe();
    let mut registration = Registration::new(&c.feed.shared, c.credential.clone(), &c.who);
    let stop = match replay(&mut c).await {
        Err(()) => Stop::Gone,
        Ok(()) => follow(&mut c, &mut live, &mut registration).await,
    };
    drop(live);
    drop(registration);
    if let Stop::CredentialsEnded(reason) = stop {
        let frame = CloseFrame {
            code: CLOSE_CREDENTIALS_ENDED,
            reason: reason.into(),
        };
        let _ =
            tokio::time::timeout(SEND_TIMEOUT, c.socket.send(Message::Close(Some(frame)))).await;
    }
}

/// Sends the live events until the client goes or its credentials end.
async fn follow(
    c: &mut Connection,
    live: &mut broadcast::Receiver<Arc<Batch>>,
    registration: &mut Registration,
) -> Stop {
    loop {
        tokio::select! {
            batch = live.recv() => match batch {
                Ok(batch) => {
                    if batch.after > c.after {
                        // Events between what this connection sent and this batch were
                        // never broadcast to it: from the database first.
                        if replay(c).await.is_err() {
                            return Stop::Gone;
                        }
                    }
                    for e in &batch.events {
                        if e.id <= c.after {
                            continue;
                        }
                        if e.audience.admits(&c.who) && send(&mut c.socket, &e.text).await.is_err() {
                            return Stop::Gone;
                        }
                        c.after = e.id;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live stream: catch up from the database.
                    if replay(c).await.is_err() {
                        return Stop::Gone;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Stop::Gone,
            },
            reason = registration.ended() => return Stop::CredentialsEnded(reason),
            incoming = c.socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Stop::Gone,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends the events after `c.after` from the database, then leaves `c.after` at the last
/// event read (sent or not: the caller's audience decides).
async fn replay(c: &mut Connection) -> Result<(), ()> {
    loop {
        let events = c
            .index
            .live_events_after(c.after, BATCH)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "live feed: cannot replay events");
            })?;
        let n = events.len();
        for (event, audience) in &events {
            if audience.admits(&c.who) {
                let text = serde_json::to_string(event).map_err(|_| ())?;
                send(&mut c.socket, &text.into()).await?;
            }
            c.after = event.id;
        }
        if (n as i64) < BATCH {
            return Ok(());
        }
    }
}

async fn send(socket: &mut WebSocket, text: &Utf8Bytes) -> Result<(), ()> {
    tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.clone())))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())
}
