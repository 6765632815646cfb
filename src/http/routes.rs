//! The routes and their handlers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use super::login::{self, Credentials, User};
use super::{Peer, Shared, blocking, prometheus, token};
use crate::access::Access;
use crate::archive::{EntryFilter, Record, Role, StableId};
use crate::classify::Direction;

/// Entries per page of `/api/interactions` unless `limit` says otherwise, and the most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Bounds of a link's lifetime asked for with `ttl_seconds`: a minute to ten years.
const MIN_LINK_TTL: i64 = 60;
const MAX_LINK_TTL: i64 = 10 * 365 * 24 * 3600;
/// Longest opportunity description, in characters.
const MAX_DESCRIPTION: usize = 10_000;
/// Request bodies are small JSON objects.
const MAX_BODY: usize = 64 * 1024;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/m/{id}", get(message))
        .route("/m/{id}/copies/{n}", get(copy))
        .route("/api/interactions", get(interactions))
        .route("/api/interactions/{no}/opportunity", post(add_opportunity))
        .route("/api/contacts/{number}/opportunities", get(opportunities))
        .route("/api/links", post(add_link))
        .route("/m/{id}/proof", get(proof))
        .route("/log/checkpoint", get(log_checkpoint))
        .route("/log/consistency", get(log_consistency))
        .route("/api/engagement/{view}", get(engagement))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(decorate))
        .with_state(shared)
}

type AppState = State<Arc<Shared>>;

/// Headers every response gets, and a debug line per request (the path only: a query may
/// hold a link token).
async fn decorate(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "HTTP request"
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// 200 while the gateway can store mail; 503 once storage failed (the gateway then stops
/// so its supervisor restarts it).
async fn healthz(State(s): AppState) -> Response {
    if s.ctx.archive.failure().is_cancelled() {
        let body = Json(json!({ "status": "failing", "reason": "storage failed" }));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    Json(json!({ "status": "ok" })).into_response()
}

/// Prometheus text: open to loopback peers (the local scraper), else admin and auditor.
async fn metrics(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !peer.is_loopback() {
        let user = login::require(&s.ctx, &headers, peer.ip()).await?;
        if !(user.has_role(Role::Admin) || user.has_role(Role::Auditor)) {
            return Err(ApiError::forbidden(
                "metrics are for admin and auditor accounts",
            ));
        }
    }
    let archive = Arc::clone(&s.ctx.archive);
    let query = crate::engagement::report::Query {
        view: crate::engagement::report::View::Summary,
        period: None,
        since: None,
        until: None,
        contact: None,
        salesperson: None,
        awaiting_after: s.ctx.archive.awaiting_after(),
        now: s.ctx.clock.now(),
        offset: 0,
        limit: None,
    };
    let (stats, engagement) = blocking(move || {
        let stats = archive.stats()?;
        let (salespeople, contacts) = archive.load_directory()?;
        let directory = crate::directory::Directory::new(salespeople, contacts);
        let all = crate::engagement::report::Visibility::All;
        let report = crate::engagement::report::build(&archive, &directory, &all, &query)?;
        let figures = match report.rows {
            crate::engagement::report::Rows::Figures(rows) => rows.into_iter().next(),
            crate::engagement::report::Rows::Awaiting(_) => None,
        };
        Ok((stats, figures.map(|r| r.figures).unwrap_or_default()))
    })
    .await?;
    let mut text = prometheus::render(&stats, &s.ctx.metrics);
    text.push_str(&prometheus::render_engagement(&engagement));
    Ok(([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response())
}

/// Who reads a message.
enum Reader {
    Account(User),
    /// A signed link: grants this one message.
    Link(String),
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

/// Whether `access` shows `record`: quarantined junk only to accounts that see everything,
/// as in IMAP.
fn visible(access: &Access, record: &Record) -> bool {
    access.may_read(record.uid) && (access.sees_all() || !record.is_junk())
}

/// `GET /m/{id}` (raw) and `GET /m/{id}.json` (metadata and entries).
async fn message(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let reader = reader(&s, &peer, &headers, query).await?;
    let Path(segment) = path.map_err(|_| ApiError::not_found())?;
    let (text, as_json) = match segment.strip_suffix(".json") {
        Some(text) => (text, true),
        None => (segment.as_str(), false),
    };
    let id: StableId = text.parse().map_err(|_| ApiError::not_found())?;
    let (access, who) = authorize(&s, reader, &id)?;
    let archive = Arc::clone(&s.ctx.archive);
    let lookup = id.clone();
    let found = blocking(move || {
        let mut record = archive
            .get_by_id(&lookup)?
            .filter(|r| access.as_ref().is_none_or(|a| visible(a, r)))
            .ok_or_else(ApiError::not_found)?;
        if as_json {
            let mut entries = archive.entries_of(record.uid)?;
            // A signed link shows what the account that made it could see of it: its
            // parties as written, no blind copies, no entries.
            match &access {
                Some(a) => {
                    a.redact(&mut record);
                    entries.retain(|e| a.sees_salesperson(&e.salesperson));
                }
                None => {
                    crate::access::Access::nothing().redact(&mut record);
                    entries.clear();
                }
            }
            let copies = archive.copies(record.uid)?;
            let mut view =
                serde_json::to_value(record.view(&copies)).map_err(ApiError::internal)?;
            if let Some(object) = view.as_object_mut() {
                object.insert(
                    "entries".into(),
                    serde_json::to_value(entries).map_err(ApiError::internal)?,
                );
            }
            Ok(Found::Json(view))
        } else {
            Ok(Found::Raw(archive.raw(&record)?))
        }
    })
    .await?;
    tracing::info!(%id, by = %who, json = as_json, "message read over HTTP");
    Ok(match found {
        Found::Json(view) => {
            ([(header::CACHE_CONTROL, "private, no-store")], Json(view)).into_response()
        }
        Found::Raw(bytes) => raw_message(bytes, &id.to_string()),
    })
}

/// Who reads: Basic credentials win over a token; without either, the answer is 401
/// whatever the path, so nothing is learned about which messages exist.
async fn reader(
    s: &Shared,
    peer: &Peer,
    headers: &HeaderMap,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Reader, ApiError> {
    let Query(LinkQuery { token }) =
        query.map_err(|_| ApiError::bad_request("malformed query string"))?;
    Ok(match token {
        Some(token) if credentials_absent(headers) => Reader::Link(token),
        _ => Reader::Account(login::require(&s.ctx, headers, peer.ip()).await?),
    })
}

/// What `reader` may see of message `id` (`None`: a signed link for it, which shows it
/// whoever made it), and who that is for the log.
fn authorize(
    s: &Shared,
    reader: Reader,
    id: &StableId,
) -> Result<(Option<Access>, String), ApiError> {
    Ok(match reader {
        Reader::Link(token) => {
            s.ctx
                .tokens
                .verify(id, &token, s.ctx.clock.now())
                .map_err(|e| ApiError::forbidden(e.to_string()))?;
            (None, "a signed link".to_owned())
        }
        Reader::Account(user) => (Some(user.access), user.account.name),
    })
}

/// `GET /m/{id}/copies/{n}`: copy `n` of a message (1: the first, what `/m/{id}` serves),
/// byte for byte, to whoever may read the message (an account, or a signed link to it).
async fn copy(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let reader = reader(&s, &peer, &headers, query).await?;
    let Path((id, n)) = path.map_err(|_| ApiError::not_found())?;
    let id: StableId = id.parse().map_err(|_| ApiError::not_found())?;
    let n: u32 = n
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(ApiError::not_found)?;
    let (access, who) = authorize(&s, reader, &id)?;
    let archive = Arc::clone(&s.ctx.archive);
    let lookup = id.clone();
    let bytes = blocking(move || {
        let record = archive
            .get_by_id(&lookup)?
            .filter(|r| access.as_ref().is_none_or(|a| visible(a, r)))
            .ok_or_else(ApiError::not_found)?;
        archive
            .copy_raw(record.uid, n)?
            .ok_or_else(ApiError::not_found)
    })
    .await?;
    tracing::info!(%id, copy = n, by = %who, "message copy read over HTTP");
    Ok(raw_message(bytes, &format!("{id}-copy-{n}")))
}

/// A message's bytes as `message/rfc822`, never cached by anyone else, saved as `NAME.eml`.
fn raw_message(bytes: Vec<u8>, name: &str) -> Response {
    let mut response = Body::from(bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}.eml\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

enum Found {
    Json(Value),
    Raw(Vec<u8>),
}

fn credentials_absent(headers: &HeaderMap) -> bool {
    login::credentials(headers) == Credentials::None
}

/// Query parameters as text, so that a bad value gets a message naming it.
#[derive(Debug, Default, Deserialize)]
struct InteractionsQuery {
    contact: Option<String>,
    salesperson: Option<String>,
    direction: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// A parameter that is there and not blank.
fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn date(name: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    given(value)
        .map(|v| {
            crate::clock::parse_date(&v).map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
        })
        .transpose()
}

/// The filter and the page size a query asks for.
fn entry_filter(q: InteractionsQuery) -> Result<(EntryFilter, usize), ApiError> {
    let direction = given(q.direction)
        .map(|d| {
            d.parse::<Direction>().map_err(|_| {
                ApiError::bad_request("direction: one of inbound, outbound, internal, external")
            })
        })
        .transpose()?;
    let after = given(q.after)
        .map(|a| {
            a.parse::<u64>()
                .map_err(|_| ApiError::bad_request("after: an entry number"))
        })
        .transpose()?;
    let limit = match given(q.limit) {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("limit: 1 to {MAX_LIMIT}")))?,
    };
    let filter = EntryFilter {
        contact: given(q.contact),
        salesperson: given(q.salesperson),
        direction,
        since: date("since", q.since)?,
        until: date("until", q.until)?,
        after,
        limit: None,
    };
    Ok((filter, limit))
}

/// `GET /api/interactions`: `{"entries": [...], "next_after": n}`, where `next_after` is
/// the `after` of the next page, `null` on the last.
async fn interactions(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    query: Result<Query<InteractionsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = login::require(&s.ctx, &headers, peer.ip()).await?;
    let Query(query) = query.map_err(|_| ApiError::bad_request("malformed query string"))?;
    let (mut filter, limit) = entry_filter(query)?;
    let archive = Arc::clone(&s.ctx.archive);
    let access = user.access;
    let (entries, next_after) = blocking(move || {
        // One more than a page tells whether there is a next one. An account that sees
        // only some messages reads in larger chunks and keeps what it may see.
        let chunk = if access.sees_all() {
            limit + 1
        } else {
            (limit + 1).max(500)
        };
        let mut page = Vec::new();
        loop {
            filter.limit = Some(chunk);
            let batch = archive.entries(&filter)?;
            let exhausted = batch.len() < chunk;
            filter.after = batch.last().map(|e| e.no).or(filter.after);
            page.extend(
                batch
                    .into_iter()
                    .filter(|e| access.may_read(e.uid) && access.sees_salesperson(&e.salesperson)),
            );
            if exhausted || page.len() > limit {
                break;
            }
        }
        let next_after = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|e| e.no)
        } else {
            None
        };
        Ok((page, next_after))
    })
    .await?;
    Ok(Json(
        json!({ "entries": entries, "next_after": next_after }),
    ))
}

/// A JSON request body: `application/json` is required (so a cross-site form cannot post
/// one with the browser's remembered Basic credentials), and an empty body is `{}`.
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large")
        }
        _ => ApiError::bad_request("the body could not be read"),
    })?;
    let bytes: &[u8] = if body.trim_ascii().is_empty() {
        b"{}"
    } else {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        &body
    };
    // Through a Value: a derived struct would also take an array, by field position.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value)
        .map_err(|_| ApiError::bad_request("the body is not the JSON object expected"))
}

#[derive(Debug, Deserialize)]
struct EngagementQuery {
    period: Option<String>,
    since: Option<String>,
    until: Option<String>,
    contact: Option<String>,
    salesperson: Option<String>,
    /// `24h`, `3d`, `0s`.
    awaiting_after: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

/// `GET /api/engagement/{view}` (`summary`, `contacts`, `salespeople`, `companies`,
/// `awaiting-us`, `awaiting-them`): `{"rows": [...], "total": n, "next_offset": n}`, where
/// `next_offset` is the `offset` of the next page, `null` on the last. A salesperson account
/// sees the figures of its own salesperson (and those it was granted) only, as in
/// `/api/interactions`.
async fn engagement(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<EngagementQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use crate::engagement::report::{self, View, Visibility};
    let user = login::require(&s.ctx, &headers, peer.ip()).await?;
    let view: View = path
        .ok()
        .and_then(|Path(v)| v.parse().ok())
        .ok_or_else(ApiError::not_found)?;
    let Query(q) = query.map_err(|_| ApiError::bad_request("malformed query string"))?;
    let period = given(q.period)
        .map(|p| {
            p.parse()
                .map_err(|_| ApiError::bad_request("period: one of day, week, month"))
        })
        .transpose()?;
    let number = |name: &'static str, v: Option<String>| {
        given(v)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| ApiError::bad_request(format!("{name}: a number")))
            })
            .transpose()
    };
    let offset = number("offset", q.offset)?.unwrap_or(0);
    let limit = match number("limit", q.limit)? {
        None => DEFAULT_LIMIT,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => return Err(ApiError::bad_request(format!("limit: 1 to {MAX_LIMIT}"))),
    };
    let awaiting_after = match given(q.awaiting_after) {
        None => s.ctx.archive.awaiting_after(),
        Some(v) => humantime::parse_duration(&v)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or_else(|| ApiError::bad_request("awaiting_after: a duration (24h, 3d)"))?,
    };
    let salesperson = given(q.salesperson);
    let visibility = match &user.access {
        Access::All => Visibility::All,
        Access::Messages(v) => Visibility::Salespeople(v.codes.clone()),
    };
    // Another salesperson's figures are not found, as their messages are not.
    if let Some(code) = &salesperson
        && !user.access.sees_salesperson(code)
    {
        return Err(ApiError::not_found());
    }
    let query = report::Query {
        view,
        period,
        since: date("since", q.since)?,
        until: date("until", q.until)?,
        contact: given(q.contact),
        salesperson,
        awaiting_after,
        now: s.ctx.clock.now(),
        offset,
        limit: Some(limit),
    };
    let archive = Arc::clone(&s.ctx.archive);
    let report = blocking(move || {
        let (salespeople, contacts) = archive.load_directory()?;
        let directory = crate::directory::Directory::new(salespeople, contacts);
        Ok(report::build(&archive, &directory, &visibility, &query)?)
    })
    .await?;
    let next_offset = (offset + limit < report.total).then_some(offset + limit);
    Ok(Json(json!({
        "rows": report.rows,
        "total": report.total,
        "next_offset": next_offset,
    })))
}

#[derive(Debug, Deserialize)]
struct NewOpportunity {
    description: Option<String>,
}

/// `POST /api/interactions/{no}/opportunity` with `{"description": "…"}`: 201 and the
/// opportunity. Auditors are read-only (403).
async fn add_opportunity(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let user = login::require(&s.ctx, &headers, peer.ip()).await?;
    if !(user.has_role(Role::Admin) || user.has_role(Role::Salesperson)) {
        return Err(ApiError::forbidden("this account is read-only"));
    }
    let no: u64 = path
        .ok()
        .and_then(|Path(no)| no.parse().ok())
        .ok_or_else(ApiError::not_found)?;
    let NewOpportunity { description } = json_body(&headers, body)?;
    let description = given(description)
        .ok_or_else(|| ApiError::bad_request("description: required, not empty"))?;
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::bad_request(format!(
            "description: at most {MAX_DESCRIPTION} characters"
        )));
    }
    let archive = Arc::clone(&s.ctx.archive);
    let now = s.ctx.clock.now();
    let access = user.access;
    let opportunity = blocking(move || {
        // The entry's own salesperson (or one granted it), or an admin: reading the
        // message for another reason is not enough.
        match archive.entry(no)? {
            Some(e) if access.may_read(e.uid) && access.sees_salesperson(&e.salesperson) => {}
            _ => return Err(ApiError::not_found()),
        }
        archive
            .add_opportunity(no, &description, now)?
            .ok_or_else(ApiError::not_found)
    })
    .await?;
    tracing::info!(
        entry = no,
        opportunity = opportunity.no,
        by = %user.account.name,
        "opportunity created over HTTP"
    );
    Ok((StatusCode::CREATED, Json(opportunity)).into_response())
}

/// `GET /api/contacts/{number}/opportunities`: `{"opportunities": [...]}`, oldest first,
/// those of messages the account may read.
async fn opportunities(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = login::require(&s.ctx, &headers, peer.ip()).await?;
    let Path(contact) = path.map_err(|_| ApiError::not_found())?;
    let archive = Arc::clone(&s.ctx.archive);
    let access = user.access;
    let list = blocking(move || {
        let mut list = archive.opportunities(&contact)?;
        if !access.sees_all() {
            let mut kept = Vec::with_capacity(list.len());
            for o in list {
                if archive.entry(o.entry)?.is_some_and(|e| {
                    access.may_read(e.uid) && access.sees_salesperson(&e.salesperson)
                }) {
                    kept.push(o);
                }
            }
            list = kept;
        }
        Ok(list)
    })
    .await?;
    Ok(Json(json!({ "opportunities": list })))
}

#[derive(Debug, Deserialize)]
struct NewLink {
    id: Option<String>,
    ttl_seconds: Option<i64>,
}

/// `POST /api/links` with `{"id": "…", "ttl_seconds": n}`: a signed link to a message the
/// account may read, `{"id", "url", "expires_at"}` (Unix seconds). The lifetime defaults to
/// `http.link_ttl`.
async fn add_link(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = login::require(&s.ctx, &headers, peer.ip()).await?;
    let NewLink { id, ttl_seconds } = json_body(&headers, body)?;
    let id: StableId = given(id)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::bad_request("id: a message's stable id"))?;
    let default_ttl = i64::try_from(s.ctx.settings.link_ttl.as_secs()).unwrap_or(MAX_LINK_TTL);
    let ttl = ttl_seconds.unwrap_or(default_ttl);
    if !(MIN_LINK_TTL..=MAX_LINK_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds: {MIN_LINK_TTL} to {MAX_LINK_TTL}"
        )));
    }
    let archive = Arc::clone(&s.ctx.archive);
    let access = user.access;
    let lookup = id.clone();
    blocking(move || {
        archive
            .get_by_id(&lookup)?
            .filter(|r| visible(&access, r))
            .map(|_| ())
            .ok_or_else(ApiError::not_found)
    })
    .await?;
    let expires_at = s.ctx.clock.now().saturating_add(ttl);
    let token = s.ctx.tokens.issue(&id, expires_at);
    tracing::info!(%id, expires_at, by = %user.account.name, "signed link issued over HTTP");
    Ok(Json(json!({
        "id": id.as_str(),
        "url": token::link(&s.ctx.settings.base_url, &id, &token),
        "expires_at": expires_at,
    })))
}

/// `GET /m/{id}/proof`: the inclusion proof of the message's first stored copy in the
/// transparency log, with the signed checkpoint it leads to. Who may read the message may
/// have its proof (an account, or a signed link to it); anyone else gets the same 404 as for
/// a message that does not exist.
async fn proof(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(LinkQuery { token }) =
        query.map_err(|_| ApiError::bad_request("malformed query string"))?;
    let reader = match token {
        Some(token) if credentials_absent(&headers) => Reader::Link(token),
        _ => Reader::Account(login::require(&s.ctx, &headers, peer.ip()).await?),
    };
    let Path(segment) = path.map_err(|_| ApiError::not_found())?;
    let id: StableId = segment.parse().map_err(|_| ApiError::not_found())?;
    let access = match reader {
        Reader::Link(token) => {
            s.ctx
                .tokens
                .verify(&id, &token, s.ctx.clock.now())
                .map_err(|e| ApiError::forbidden(e.to_string()))?;
            None
        }
        Reader::Account(user) => Some(user.access),
    };
    let archive = Arc::clone(&s.ctx.archive);
    let proof = blocking(move || {
        let record = archive
            .get_by_id(&id)?
            .filter(|r| access.as_ref().is_none_or(|a| visible(a, r)))
            .ok_or_else(ApiError::not_found)?;
        archive.prove(record.uid)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "this message was archived before the transparency log began",
            )
        })
    })
    .await?;
    Ok(Json(proof).into_response())
}

/// `GET /log/checkpoint`: the latest signed checkpoint (signed now if the tree has grown),
/// as `text/plain`, for any account.
async fn log_checkpoint(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    login::require(&s.ctx, &headers, peer.ip()).await?;
    let archive = Arc::clone(&s.ctx.archive);
    let (note, _) = blocking(move || Ok(archive.checkpoint_log()?)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ConsistencyQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /log/consistency?from=N[&to=M]`: the consistency proof between the trees of N and
/// M leaves (M defaults to the latest checkpoint's size), for admin and auditor accounts.
async fn log_consistency(
    State(s): AppState,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let user = login::require(&s.ctx, &headers, peer.ip()).await?;
    if !(user.has_role(Role::Admin) || user.has_role(Role::Auditor)) {
        return Err(ApiError::forbidden(
            "consistency proofs are for admin and auditor accounts",
        ));
    }
    let Query(q) = query.map_err(|_| ApiError::bad_request("malformed query string"))?;
    let size = |name: &'static str, v: Option<String>| {
        given(v)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("{name}: a tree size")))
            })
            .transpose()
    };
    let from = size("from", q.from)?
        .ok_or_else(|| ApiError::bad_request("from: the tree size of the older checkpoint"))?;
    let to = size("to", q.to)?;
    let archive = Arc::clone(&s.ctx.archive);
    let proof = blocking(move || {
        archive.prove_consistency(from, to)?.ok_or_else(|| {
            ApiError::bad_request("want 1 <= from <= to <= the tree size of the latest checkpoint")
        })
    })
    .await?;
    Ok(Json(proof).into_response())
}
